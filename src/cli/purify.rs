//! `gcleaner purify`: recover and unlearn a backdoor trigger, write the purified model and the
//! report.

use std::path::PathBuf;

use anyhow::Result;
use gcleaner_engine::purify::unlearn::UnlearnMode;
use serde_json::{json, Value};

use super::common::RecoveryArgs;

#[derive(clap::Args)]
pub struct PurifyArgs {
    #[command(flatten)]
    recovery: RecoveryArgs,
    /// An attack directory (from `gcleaner attack`), or a zip / tar.gz of one: report the true
    /// ASR and accuracy before and after on its evaluation sets.
    #[arg(long)]
    attack: Option<PathBuf>,
    /// Unlearning loss: robust or paper (the published loss, for reproduction) [default: robust].
    #[arg(long)]
    mode: Option<UnlearnMode>,
    /// Unlearning epochs [default: 30; 15 with pseudo-labels, which also train the head alone].
    /// Robust mode stops earlier, after 3 (unlearn.min_epochs), once the trigger moves no more of
    /// the unlearning copies than natural patterns did, and goes on past them, up to 90 in all,
    /// while it moves more (unlearn.max_epochs)
    #[arg(long)]
    unlearn_epochs: Option<usize>,
    /// Weight of the heat-map term (paper mode) [default: 0.5].
    #[arg(long)]
    lambda: Option<f64>,
    /// Do not keep an unlearning epoch after which a class's recall on the clean sample has fallen
    /// by more than this; the run returns the last epoch that kept every class [default: 0.3].
    #[arg(long)]
    collapse_drop: Option<f64>,
    /// Unlearn even without backdoor evidence.
    #[arg(long)]
    force: bool,
    /// Output directory: model.safetensors, report.json, report.html.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: PurifyArgs) -> Result<()> {
    let overrides = args.recovery.overrides(&purify_options(&args))?;
    let output = args.recovery.run_pipeline(&overrides, args.attack.as_deref(), Some(&args.out))?;
    let report = output.report;
    println!("{}", report.verdict.summary);
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let (b, a) = (&report.holdout.before, &report.holdout.after);
    println!(
        "held-out: accuracy {:.3} -> {:.3}, trigger flip rate {:.3} -> {:.3} ({} graphs)",
        b.evaluation.accuracy, a.evaluation.accuracy, b.flip_rate, a.flip_rate, report.sample.n_holdout
    );
    if let Some(a) = &report.attack {
        println!(
            "attack eval set: ASR {:.3} -> {:.3}, clean accuracy {:.3} -> {:.3}, balanced {:.3} -> {:.3}{}",
            a.before.asr,
            a.after.asr,
            a.before.clean_accuracy,
            a.after.clean_accuracy,
            a.before.balanced_accuracy,
            a.after.balanced_accuracy,
            a.clean_model.as_ref().map(|c| format!(" (never-backdoored model ASR {:.3})", c.asr)).unwrap_or_default()
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The settings purify's own options change (the shared ones are [`RecoveryArgs::overrides`]'s).
fn purify_options(args: &PurifyArgs) -> [(&'static str, Option<Value>); 5] {
    [
        ("force", args.force.then_some(json!(true))),
        ("unlearn.mode", args.mode.map(|m| json!(m))),
        ("unlearn.epochs", args.unlearn_epochs.map(|n| json!(n))),
        ("unlearn.lambda", args.lambda.map(|l| json!(l))),
        ("unlearn.collapse_drop", args.collapse_drop.map(|d| json!(d))),
    ]
}
