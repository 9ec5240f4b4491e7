//! A scan is the purification pipeline stopped at the verdict: the same candidates and the same
//! judgement as a purification of the same model with the same seed, nothing unlearned, no model
//! written, and a report that says it was a scan.

use gcleaner_engine::data::{synthetic, Dataset};
use gcleaner_engine::models::weights::WeightLimits;
use gcleaner_engine::progress::{Progress, ProgressEvent};
use gcleaner_engine::purify::pipeline::{
    run_purification, LabelMismatch, PipelineEvents, PurificationJob, MODEL_FILE, REPORT_FILE, REPORT_HTML_FILE,
};
use gcleaner_engine::purify::settings::{Overrides, RunMode};
use gcleaner_engine::Error;
use serde_json::json;
use tch::Device;

struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: ProgressEvent<'_>) -> bool {
        true
    }
}

impl PipelineEvents for Quiet {
    fn note(&mut self, _: &str) {}
    fn labels_do_not_fit(&mut self, why: &LabelMismatch) -> gcleaner_engine::Result<()> {
        Err(Error::invalid(why.to_string()))
    }
}

/// A small GIN trained for a few epochs on generated graphs, saved as `model.safetensors` in `dir`.
fn saved_model(dir: &std::path::Path, ds: &Dataset) -> std::path::PathBuf {
    let model = crate::small_gin::trained_small_gin(ds, 5);
    let path = dir.join("suspect.safetensors");
    model.save(&path).unwrap();
    path
}

/// Few epochs of everything; unlearning forced in purify mode so that the two runs differ.
fn settings(mode: &str) -> Overrides {
    let mut config = json!({
        "mode": mode, "seed": 5, "trigger_nodes": 3,
        "recovery": { "epochs": 3, "restarts": 2 },
        "unlearn": { "epochs": 2, "teacher_epochs": 2, "positions": 2 }
    });
    if mode == "purify" {
        config["force"] = json!(true);
    }
    Overrides::from_object(&config).unwrap()
}

#[test]
fn a_scan_judges_like_a_purification_and_unlearns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic::generate(40, 5);
    let model = saved_model(dir.path(), &ds);
    let run = |mode: &str| {
        let out = dir.path().join(mode);
        let overrides = settings(mode);
        let job = PurificationJob {
            model: &model,
            spec: None,
            weight_limits: WeightLimits::default(),
            sample: ds.clone(),
            attack: None,
            device: Device::Cpu,
            overrides: &overrides,
            out_dir: Some(&out),
        };
        (run_purification(job, &mut Quiet).unwrap(), out)
    };
    let (scan, scan_dir) = run("scan");
    let (purified, purify_dir) = run("purify");

    assert_eq!(scan.report.config.mode, RunMode::Scan);
    assert!(scan.model.is_none());
    assert!(!scan_dir.join(MODEL_FILE).exists());
    assert!(scan_dir.join(REPORT_FILE).is_file() && scan_dir.join(REPORT_HTML_FILE).is_file());
    assert!(scan.report.unlearning.is_none() && scan.report.unlearned_candidates.is_empty());
    assert!(!scan.report.verdict.model_changed);
    assert!(scan.report.verdict.summary.ends_with("scan only, nothing was unlearned"), "{}", scan.report.verdict.summary);
    assert_eq!(scan.report.holdout.before, scan.report.holdout.after);
    assert!(scan.report_html.contains("gcleaner scan report") && scan.report_html.contains("Scan only"));
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(scan_dir.join(REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(written["config"]["mode"], "scan");

    // The same pipeline up to the verdict: the same candidates, target and evidence.
    assert_eq!(purified.model.as_deref(), Some(purify_dir.join(MODEL_FILE).as_path()));
    assert!(purified.report.unlearning.is_some() && purified.report_html.contains("gcleaner purification report"));
    assert_eq!(scan.report.candidates, purified.report.candidates);
    assert_eq!(scan.report.selected, purified.report.selected);
    let (s, p) = (&scan.report.verdict, &purified.report.verdict);
    assert_eq!(
        (s.backdoor_evidence, s.suspected_target, s.evidence_score, s.trigger_nodes),
        (p.backdoor_evidence, p.suspected_target, p.evidence_score, p.trigger_nodes)
    );
}

#[test]
fn a_scan_without_an_output_directory_writes_nothing_and_force_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = synthetic::generate(30, 6);
    let model = saved_model(dir.path(), &ds);
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    let overrides = settings("scan");
    let job = |overrides| PurificationJob {
        model: &model,
        spec: None,
        weight_limits: WeightLimits::default(),
        sample: ds.clone(),
        attack: None,
        device: Device::Cpu,
        overrides,
        out_dir: None,
    };
    let output = run_purification(job(&overrides), &mut Quiet).unwrap();
    assert!(output.model.is_none() && output.report.config.mode == RunMode::Scan);
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(before, after);

    let mut forced = settings("scan");
    forced.set("force", json!(true)).unwrap();
    match run_purification(job(&forced), &mut Quiet) {
        Err(Error::Setting { path, .. }) => assert_eq!(path, "force"),
        Err(other) => panic!("not a setting error: {other}"),
        Ok(_) => panic!("a forced scan ran"),
    }
    // An unknown mode is refused by its value when it is given.
    assert!(Overrides::from_object(&json!({ "mode": "audit" })).is_err());
}
