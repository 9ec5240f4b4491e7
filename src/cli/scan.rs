//! `gcleaner scan`: recover and judge a backdoor trigger without unlearning it, for a pipeline to
//! branch on. Exit status 0: no backdoor evidence; 1: evidence of a backdoor; 2: an error (one
//! line on stderr). The run is `purify`'s with the settings' `mode` set to `scan`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use gcleaner_engine::purify::report::PurifyReport;
use serde_json::json;

use super::common::RecoveryArgs;

/// The exit status of a scan that found evidence of a backdoor.
const BACKDOOR: u8 = 1;
/// The exit status of a scan that could not run (also that of a refused command line).
const ERROR: u8 = 2;

#[derive(clap::Args)]
pub struct ScanArgs {
    #[command(flatten)]
    recovery: RecoveryArgs,
    /// Print the whole report (verdict, candidates, held-out measurements) as JSON on stdout
    /// instead of a short summary.
    #[arg(long)]
    json: bool,
    /// Also write report.json and report.html into this directory (no model: a scan changes
    /// nothing).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: ScanArgs) -> ExitCode {
    match scan(&args) {
        Ok(report) if report.verdict.backdoor_evidence => ExitCode::from(BACKDOOR),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            super::print_error(&err);
            ExitCode::from(ERROR)
        }
    }
}

fn scan(args: &ScanArgs) -> Result<PurifyReport> {
    let overrides = args.recovery.overrides(&[("mode", Some(json!("scan")))])?;
    let output = args.recovery.run_pipeline(&overrides, None, args.out.as_deref())?;
    let report = output.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
        if let Some(out) = &args.out {
            println!("wrote {}", out.display());
        }
    }
    Ok(report)
}

/// The verdict in a few lines: what was found, the suspected target, the pattern, and the
/// evidence against the threshold.
fn summary(report: &PurifyReport) -> String {
    let v = &report.verdict;
    let target = v.suspected_target;
    // The class as the data file names it, where the model's spec records the labels.
    let label = report
        .spec
        .class_labels
        .as_ref()
        .and_then(|labels| labels.get(target))
        .map(|label| format!(" (label {label})"))
        .unwrap_or_default();
    let mut text = String::new();
    text.push_str(if v.backdoor_evidence { "backdoor evidence\n" } else { "no backdoor evidence\n" });
    text.push_str(&format!("suspected target: class {target}{label}\n"));
    text.push_str(&format!("trigger: {} nodes, {} edges\n", v.trigger_nodes, v.trigger_edges));
    text.push_str(&format!(
        "evidence: {:.3} {} threshold {:.3} (flip rate {:.3}, natural patterns {:.3}, excess {:.3} +/- {:.3})\n",
        v.evidence_score,
        if v.backdoor_evidence { ">=" } else { "<" },
        v.threshold,
        v.flip_rate,
        v.natural_flip_rate,
        v.excess,
        v.excess_se
    ));
    if let Some(sha) = &report.input_sha256 {
        text.push_str(&format!("model sha256: {sha}\n"));
    }
    text
}
