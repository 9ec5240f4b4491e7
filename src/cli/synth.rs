//! `gcleaner synth`: write the generated demo dataset (no files from outside the repository).

use std::path::PathBuf;

use anyhow::Result;
use gcleaner_engine::data::{json::write_json_dataset, synthetic};

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Number of graphs (half of each class).
    #[arg(long, default_value_t = 600)]
    graphs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file in the gcleaner JSON dataset format.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let ds = synthetic::generate(args.graphs, args.seed);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_json_dataset(&ds, &args.out)?;
    println!("wrote {} graphs to {}", ds.len(), args.out.display());
    Ok(())
}
