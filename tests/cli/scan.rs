//! `gcleaner scan` as a pipeline step: exit status 0 without backdoor evidence, 1 with it, 2 on
//! an error (one line on stderr naming what and where); `--json` prints the report on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gcleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gcleaner")).args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit status 2 and one `error:` line on stderr holding every needle.
fn assert_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("error: "), "stderr: {err}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} missing from: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
}

/// A Sub-BA backdoor planted into a GIN on generated graphs (`make sample`'s attack): the attack
/// directory holds the backdoored model, its never-backdoored twin and the defender's sample.
fn planted_attack(dir: &Path) -> PathBuf {
    let data = dir.join("synthetic.json");
    let out = gcleaner(&["synth", "--graphs", "600", "--seed", "1", "--out", path(&data)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let attack = dir.join("attack");
    let out = gcleaner(&[
        "attack",
        "--data",
        path(&data),
        "--attack",
        "subgraph",
        "--arch",
        "gin",
        "--epochs",
        "40",
        "--target-label",
        "0",
        "--trigger-ratio",
        "0.25",
        "--injection-ratio",
        "0.15",
        "--defender-fraction",
        "0.1",
        "--device",
        "cpu",
        "--out",
        path(&attack),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    attack
}

fn scan(model: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["scan", "--model", path(model), "--data", path(data), "--device", "cpu"];
    args.extend_from_slice(extra);
    gcleaner(&args)
}

#[test]
fn a_planted_backdoor_exits_1_and_the_never_backdoored_model_0() {
    let dir = tempfile::tempdir().unwrap();
    let attack = planted_attack(dir.path());
    let sample = attack.join("defender_clean.json");

    let out_dir = dir.path().join("scan");
    let out = scan(&attack.join("model.safetensors"), &sample, &["--json", "--out", path(&out_dir)]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints the report alone on stdout");
    assert_eq!(report["config"]["mode"], "scan");
    assert_eq!(report["verdict"]["backdoor_evidence"], true, "{}", report["verdict"]);
    assert_eq!(report["verdict"]["suspected_target"], 0);
    assert_eq!(report["verdict"]["model_changed"], false);
    assert!(report["unlearning"].is_null());
    assert!(out_dir.join("report.json").is_file() && out_dir.join("report.html").is_file());
    assert!(!out_dir.join("model.safetensors").exists(), "a scan writes no model");

    let out = scan(&attack.join("clean_model.safetensors"), &sample, &[]);
    assert_eq!(out.status.code(), Some(0), "stdout: {} stderr: {}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("no backdoor evidence\n"), "{text}");
    for needle in ["suspected target: class ", "trigger: ", " nodes, ", "evidence: ", " < threshold 0.300"] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

#[test]
fn errors_exit_2_with_one_line_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sample.json");
    assert!(gcleaner(&["synth", "--graphs", "24", "--seed", "3", "--out", path(&data)]).status.success());
    let model_dir = dir.path().join("model");
    let out = gcleaner(&[
        "train",
        "--data",
        path(&data),
        "--hidden",
        "8",
        "--layers",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        path(&model_dir),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model = model_dir.join("model.safetensors");

    assert_error(&scan(Path::new("/nonexistent/suspect.safetensors"), &data, &[]), &["/nonexistent/suspect.safetensors"]);
    assert_error(&scan(&model, Path::new("/nonexistent/clean.json"), &["--json"]), &["/nonexistent/clean.json"]);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"graphs\": [").unwrap();
    assert_error(&scan(&model, &broken, &[]), &["broken.json"]);
    let pickle = dir.path().join("model.pt");
    std::fs::write(&pickle, b"\x80\x04\x95 not really a pickle").unwrap();
    assert_error(&scan(&pickle, &data, &[]), &["model.pt", "safetensors"]);
    // A setting without meaning for a scan, and one out of range, named by path or flag.
    assert_error(&scan(&model, &data, &["--set", "force=true"]), &["force", "scan"]);
    assert_error(&scan(&model, &data, &["--threshold", "2"]), &["evidence_threshold", "--threshold"]);
    // A command line clap refuses exits 2 as well, never 1 (which would read as a verdict).
    assert_error(&gcleaner(&["scan", "--model", path(&model)]), &["--data"]);
}
