//! The `gcleaner` binary: research CLI and HTTP service.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
