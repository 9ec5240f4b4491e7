//! Command-line interface: one file per subcommand group.

mod asr;
mod attack;
mod common;
mod eval;
mod features_arg;
mod migrate;
mod purify;
mod reproduce;
mod scan;
mod serve;
mod synth;
mod token;
mod train;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gcleaner", version, about = "Find and remove backdoors in graph neural network classifiers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a graph classifier and save it with its spec.
    Train(train::TrainArgs),
    /// Accuracy, per-class recall and confusion matrix of a model on a labelled dataset.
    Eval(eval::ModelDataArgs),
    /// Per-graph logits and predicted classes of a model on a dataset.
    Predict(eval::ModelDataArgs),
    /// Backdoor a classifier (Sub-BA, Exp-BA, Motif-BA, GTA): both models, trigger, defender sample, evaluation sets.
    Attack(Box<attack::AttackArgs>),
    /// Attack success rate and clean accuracy of a model on an attack's evaluation sets.
    Asr(asr::AsrArgs),
    /// Recover and unlearn a backdoor trigger: purified model, report.json, report.html.
    ///
    /// Prints the verdict, held-out accuracy and trigger flip rate before and after (with
    /// --attack, the true ASR and accuracy too). What to check before using the purified model,
    /// such as a held-out accuracy fall unlikely to be chance, follows on stderr as `warning:`
    /// lines (also in report.json's `warnings`).
    Purify(Box<purify::PurifyArgs>),
    /// Recover and judge a backdoor trigger without unlearning it; the exit status says the verdict.
    ///
    /// Exit status 0: no backdoor evidence; 1: evidence of a backdoor; 2: an error (one line on
    /// stderr). Prints the suspected target, the trigger's size and the evidence against the
    /// threshold, or with --json the whole report.
    Scan(Box<scan::ScanArgs>),
    /// The paper's comparison table: attacks x defences x seeds on real datasets (resumable JSON).
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// Write a generated demo dataset (two structural classes) as JSON.
    Synth(synth::SynthArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::eval(args),
        Command::Predict(args) => eval::predict(args),
        Command::Attack(args) => attack::run(*args),
        Command::Asr(args) => asr::run(args),
        Command::Purify(args) => purify::run(*args),
        // A scan's exit status is its verdict, so it reports its own errors.
        Command::Scan(args) => return scan::run(*args),
        Command::Reproduce(args) => reproduce::run(*args),
        Command::Synth(args) => synth::run(args),
        Command::Info => {
            println!("gcleaner {}", env!("CARGO_PKG_VERSION"));
            println!("cuda available: {} ({} device(s))", tch::Cuda::is_available(), tch::Cuda::device_count());
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
            print_error(&err);
            ExitCode::FAILURE
        }
    }
}

/// One line on stderr: what went wrong and where, with the chain of causes.
fn print_error(err: &anyhow::Error) {
    eprintln!("error: {}", format!("{err:#}").replace('\n', " "));
}

/// A command line clap refused, as one line on stderr like every other error (clap's own layout
/// spreads it over a paragraph, the usage and a hint). Help and version requests print as clap
/// lays them out.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    eprintln!("{}", one_line_usage_error(&err.render().to_string()));
    ExitCode::from(2)
}

/// clap's message up to its first blank line (the error and any list it gives), joined into
/// one line, with where to read more.
fn one_line_usage_error(rendered: &str) -> String {
    let first_paragraph: Vec<&str> = rendered.lines().map(str::trim).take_while(|line| !line.is_empty()).collect();
    let message = first_paragraph.join(" ");
    let message = if message.starts_with("error:") { message } else { format!("error: {message}") };
    format!("{message} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line_that_keeps_what_clap_listed() {
        let Err(err) = Cli::try_parse_from(["gcleaner", "purify", "--out", "x"]) else { panic!("accepted") };
        let line = one_line_usage_error(&err.render().to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("error: ") && line.contains("--model") && line.contains("--data"), "{line}");
        let Err(err) = Cli::try_parse_from(["gcleaner", "attack", "--attack", "nope"]) else { panic!("accepted") };
        let line = one_line_usage_error(&err.render().to_string());
        assert!(line.contains("nope") && line.contains("--attack"), "{line}");
    }
}
