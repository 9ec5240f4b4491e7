//! `gcleaner asr`: measure any model (backdoored, clean, purified) against the evaluation sets
//! of an attack directory.

use std::path::PathBuf;

use anyhow::Result;
use gcleaner_engine::attacks::evaluate_on_attack;

use super::common::{load_model, DeviceArg};

#[derive(clap::Args)]
pub struct AsrArgs {
    /// The model to measure (.safetensors, spec embedded or given with --spec).
    #[arg(long)]
    model: PathBuf,
    /// Model spec JSON, for weights saved without an embedded spec.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// An attack directory written by `gcleaner attack`, or a zip / tar.gz of one.
    #[arg(long)]
    attack: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: AsrArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let model = load_model(&args.model, args.spec.as_ref(), device)?;
    let m = evaluate_on_attack(&model, &args.attack)?;
    if args.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!("attack success rate: {:.4} ({} triggered graphs, target class {})", m.asr, m.n_triggered, m.target_label);
        println!(
            "clean accuracy:      {:.4} (balanced {:.4}, {} clean graphs)",
            m.clean_accuracy, m.balanced_accuracy, m.n_clean
        );
        for (class, recall) in m.per_class_recall.iter().enumerate() {
            println!("  class {class}: recall {recall:.4}");
        }
    }
    Ok(())
}
