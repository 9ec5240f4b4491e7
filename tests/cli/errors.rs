//! Bad input to the CLI: one line on stderr naming what and where, a non-zero exit, no panic.

use std::process::{Command, Output};

fn gcleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gcleaner")).args(args).output().unwrap()
}

fn assert_one_line_error(out: &Output, must_contain: &[&str]) {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "stderr: {stderr}");
    for needle in must_contain {
        assert!(lines[0].contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Generates `graphs` synthetic graphs into `dir` and trains a small 2-layer GIN on them for
/// `epochs` epochs; returns the data file and the model folder.
fn synth_and_train(dir: &std::path::Path, graphs: &str, epochs: &str, hidden: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("synthetic.json");
    let model_dir = dir.join("gin");
    assert!(gcleaner(&["synth", "--graphs", graphs, "--out", data.to_str().unwrap()]).status.success());
    let out = gcleaner(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "gin",
        "--epochs",
        epochs,
        "--layers",
        "2",
        "--hidden",
        hidden,
        "--device",
        "cpu",
        "--out",
        model_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (data, model_dir)
}

#[test]
fn missing_dataset_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = gcleaner(&["train", "--data", "/nonexistent/DS", "--out", dir.path().to_str().unwrap()]);
    assert_one_line_error(&out, &["/nonexistent/DS"]);
}

#[test]
fn malformed_gin_text_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    // Graph 1 declares 2 nodes; node line 2 names neighbour 7, outside the graph.
    std::fs::write(&path, "1\n2 0\n0 1 1\n0 1 7\n").unwrap();
    let out = gcleaner(&["train", "--data", path.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()]);
    assert_one_line_error(&out, &["bad.txt:4"]);
}

#[test]
fn pickle_weights_are_refused_with_a_conversion_hint() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.pt");
    std::fs::write(&model, b"\x80\x04\x95 not really a pickle").unwrap();
    let data = dir.path().join("d.json");
    std::fs::write(&data, r#"{"graphs":[{"num_nodes":2,"edges":[[0,1]],"label":0}]}"#).unwrap();
    let out = gcleaner(&["predict", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_one_line_error(&out, &["model.pt", "safetensors"]);
}

#[test]
fn train_eval_round_trip_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model_dir) = synth_and_train(dir.path(), "120", "5", "16");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("metrics.json")).unwrap()).unwrap();
    for key in ["train_accuracy", "test_accuracy", "epochs", "seconds", "seed"] {
        assert!(!metrics[key].is_null(), "metrics.json lacks {key}");
    }
    let out = gcleaner(&[
        "eval",
        "--json",
        "--model",
        model_dir.join("model.safetensors").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["n"], 120);
    let confusion_total: u64 =
        eval["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(confusion_total, 120);
    let acc = eval["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn purify_set_overrides_config_fields_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model_dir) = synth_and_train(dir.path(), "60", "2", "8");
    let model = model_dir.join("model.safetensors");
    let purify = |set: &[&str], out_dir: &str| {
        let mut args = vec![
            "purify",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--device",
            "cpu",
            "--recovery-epochs",
            "1",
            "--restarts",
            "1",
            "--unlearn-epochs",
            "1",
        ];
        for s in set {
            args.extend(["--set", s]);
        }
        let out_path = dir.path().join(out_dir);
        args.extend(["--out", out_path.to_str().unwrap()]);
        (gcleaner(&args), out_path)
    };
    let (out, _) = purify(&["recovery.no_such_field=1"], "a");
    assert_one_line_error(&out, &["recovery.no_such_field"]);
    let (out, _) = purify(&["unlearn.epochs=many"], "b");
    assert_one_line_error(&out, &["unlearn.epochs=many"]);
    // Meaningless values are refused before any work, naming the setting and what sets it.
    let (out, _) = purify(&["unlearn.lr=-1"], "d");
    assert_one_line_error(&out, &["unlearn.lr must be", "-1", "--set unlearn.lr"]);
    let (out, _) = purify(&["evidence_threshold=2"], "e");
    assert_one_line_error(&out, &["evidence_threshold must be in [0, 1]", "--threshold"]);
    let (out, _) = purify(&["trigger_nodes=1000"], "f");
    assert_one_line_error(&out, &["trigger_nodes must be at most", "1000", "--trigger-nodes"]);
    let (out, path) = purify(&["recovery.sizes=[3]", "unlearn.non_target_weight=2", "recovery.census=false"], "c");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["config"]["recovery"]["sizes"], serde_json::json!([3]));
    assert_eq!(report["config"]["unlearn"]["non_target_weight"], 2.0);
    assert_eq!(report["config"]["recovery"]["census"], false);
    assert_eq!(report["candidates"][0]["census_patterns"], 0);
}

#[test]
fn a_purification_that_wrecks_the_model_says_so_on_stderr_and_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model_dir) = synth_and_train(dir.path(), "80", "5", "16");
    let out_dir = dir.path().join("wrecked");
    // The paper mode's loss holds no labels: at 1000 times its step size, with the collapse
    // guard off, it wrecks the model.
    let out = gcleaner(&[
        "purify",
        "--model",
        model_dir.join("model.safetensors").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--device",
        "cpu",
        "--force",
        "--trigger-nodes",
        "3",
        "--recovery-epochs",
        "3",
        "--restarts",
        "2",
        "--mode",
        "paper",
        "--unlearn-epochs",
        "10",
        "--collapse-drop",
        "1",
        "--set",
        "unlearn.lr=1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "stderr: {stderr}");
    assert!(warnings[0].contains("held-out accuracy fell"), "{}", warnings[0]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["holdout"]["change"]["accuracy_fell"], true);
    assert_eq!(format!("warning: {}", report["warnings"][0].as_str().unwrap()), warnings[0]);
}
