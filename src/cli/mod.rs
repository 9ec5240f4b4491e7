//! Command-line interface: one subcommand per module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod migrate;
mod serve;
mod token;
mod worker;

#[derive(Parser)]
#[command(name = "gcleaner", version, about = "Find and remove backdoors in graph neural network classifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch build and the devices it sees.
    Info,
    /// Run the HTTP purification service (API plus in-process workers).
    Serve(gcleaner::config::ServeConfig),
    /// Run queue workers without the HTTP API.
    Worker(gcleaner::config::WorkerConfig),
    /// Apply database migrations.
    Migrate(gcleaner::config::DatabaseConfig),
    /// Create, list or disable API tokens.
    Token(token::TokenArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Info => {
            println!("cuda available: {}", tch::Cuda::is_available());
            Ok(())
        }
        Command::Serve(config) => serve::run(config),
        Command::Worker(config) => worker::run(config),
        Command::Migrate(config) => migrate::run(config),
        Command::Token(args) => token::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
