//! The `gcleaner` binary: research CLI and HTTP service.

mod cli;

fn main() -> std::process::ExitCode {
    gcleaner_engine::allocator::tune_for_tensors();
    cli::main()
}
