//! `gcleaner predict` on weights saved by PyTorch Geometric: the log-probabilities it prints
//! must match PyG's within 1e-4 for all four architectures. The reference models and graphs
//! come from tests/interop/pyg_reference.py (skipped, with the reason printed, when the venv
//! lacks torch_geometric).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python_with_pyg() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import torch_geometric, safetensors"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(python)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn predict_matches_pyg_log_probabilities_for_every_architecture() {
    let Some(python) = python_with_pyg() else {
        eprintln!("skipping: torch_geometric is not installed in .venv (`make test` installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(&python)
        .arg(repo_root().join("tests/interop/pyg_reference.py"))
        .args(["--out", dir.path().to_str().unwrap(), "--seed", "3"])
        .status()
        .unwrap();
    assert!(status.success(), "reference script failed");
    let expected = read_json(&dir.path().join("expected.json"));
    let graphs = dir.path().join("graphs.json");
    let mut archs_checked = std::collections::BTreeSet::new();
    for case in expected["cases"].as_array().unwrap() {
        // The CLI predicts with unit edge weights in evaluation mode.
        if !case["edge_weights"].is_null() {
            continue;
        }
        let weights = dir.path().join(case["weights"].as_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_gcleaner"))
            .args(["predict", "--json", "--device", "cpu", "--model"])
            .arg(&weights)
            .arg("--data")
            .arg(&graphs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", case["name"], String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = got["predictions"].as_array().unwrap();
        let want = case["log_probs"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{}", case["name"]);
        let mut max_diff = 0f64;
        for (i, (row, want)) in rows.iter().zip(want).enumerate() {
            assert_eq!(row["index"].as_u64().unwrap() as usize, i);
            for (a, b) in row["log_probs"].as_array().unwrap().iter().zip(want.as_array().unwrap()) {
                max_diff = max_diff.max((a.as_f64().unwrap() - b.as_f64().unwrap()).abs());
            }
        }
        eprintln!("{}: max |log-prob difference| {max_diff:.2e}", case["name"]);
        assert!(max_diff <= 1e-4, "{}: max difference {max_diff}", case["name"]);
        archs_checked.insert(case["arch"].as_str().unwrap().to_string());
    }
    assert_eq!(archs_checked.len(), 4, "checked {archs_checked:?}");
}

fn run_gcleaner(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gcleaner")).args(args).output().unwrap()
}

/// Models built from PyG's own classes (gcleaner.model/v2) go through `gcleaner purify` and
/// `gcleaner attack --spec`; every file written loads back into the same PyG class with
/// `load_state_dict(strict=True)` and predicts what `gcleaner predict` prints. Models with modules gcleaner cannot run are refused
/// with the module named.
#[test]
fn purify_runs_on_pyg_model_classes_and_pyg_loads_the_result_strictly() {
    let Some(python) = python_with_pyg() else {
        eprintln!("skipping: torch_geometric is not installed in .venv (`make test` installs it)");
        return;
    };
    let script = repo_root().join("tests/interop/pyg_models.py");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = path("data.json");
    let out = run_gcleaner(&["synth", "--graphs", "60", "--seed", "1", "--out", &data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let gnns = [
        r#"{"class": "GIN", "hidden_channels": 16, "num_layers": 3, "norm": "batch_norm", "jk": "cat"}"#,
        r#"{"class": "GCN", "hidden_channels": 16, "num_layers": 2, "out_channels": 8}"#,
        r#"{"class": "GAT", "hidden_channels": 16, "num_layers": 3, "jk": "max", "heads": 2}"#,
        r#"{"class": "GraphSAGE", "hidden_channels": 16, "num_layers": 3, "norm": "batch_norm", "jk": "last"}"#,
    ];
    let heads = [
        r#"{"class": "MLP", "channel_list": [16, 16, 2]}"#,
        r#"{"class": "Linear"}"#,
        r#"{"class": "MLP", "channel_list": [16, 8, 2], "norm": null}"#,
        r#"{"class": "MLP", "channel_list": [16, 2]}"#,
    ];
    let pools = ["max", "mean", "add", "mean"];
    let mut results = Vec::new();
    for (i, ((gnn, head), pool)) in gnns.iter().zip(heads).zip(pools).enumerate() {
        let spec = format!(
            r#"{{"format": "gcleaner.model/v2", "in_features": 2, "num_classes": 2,
                "features": {{"kind": "node_attributes", "dim": 2}}, "gnn": {gnn}, "pool": "{pool}", "head": {head}}}"#
        );
        let (spec_path, model) = (path(&format!("spec{i}.json")), path(&format!("model{i}.safetensors")));
        std::fs::write(&spec_path, spec).unwrap();
        let built = Command::new(&python).arg(&script).args(["model", "--spec", &spec_path, "--out", &model]).output().unwrap();
        assert!(built.status.success(), "{gnn}: {}", String::from_utf8_lossy(&built.stderr));
        let purified = path(&format!("purified{i}"));
        // The GAT goes through the paper's loss (Grad-CAM heat maps of every block), the others
        // through the robust mode (frozen blocks, jumping knowledge over them).
        let mode = if i == 2 { "paper" } else { "robust" };
        let out = run_gcleaner(&[
            "purify",
            "--mode",
            mode,
            "--model",
            &model,
            "--data",
            &data,
            "--device",
            "cpu",
            "--force",
            "--trigger-nodes",
            "3",
            "--recovery-epochs",
            "2",
            "--restarts",
            "1",
            "--unlearn-epochs",
            "3",
            "--out",
            &purified,
        ]);
        assert!(out.status.success(), "{gnn}: {}", String::from_utf8_lossy(&out.stderr));
        let weights = format!("{purified}/model.safetensors");
        let out = run_gcleaner(&["predict", "--json", "--device", "cpu", "--model", &weights, "--data", &data]);
        assert!(out.status.success(), "{gnn}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows: Vec<Value> = got["predictions"].as_array().unwrap().iter().map(|r| r["log_probs"].clone()).collect();
        results.push(serde_json::json!({"weights": weights, "log_probs": rows}));
    }
    // A backdoor planted into a PyG model class by `gcleaner attack --spec`: both of its models
    // load into PyG strictly too.
    let many = path("data200.json");
    let out = run_gcleaner(&["synth", "--graphs", "200", "--seed", "2", "--out", &many]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let attack = path("attack");
    let out = run_gcleaner(&[
        "attack",
        "--spec",
        &path("spec0.json"),
        "--data",
        &many,
        "--attack",
        "subgraph",
        "--epochs",
        "3",
        "--defender-fraction",
        "0.1",
        "--device",
        "cpu",
        "--out",
        &attack,
    ]);
    assert!(out.status.success(), "attack: {}", String::from_utf8_lossy(&out.stderr));
    for file in ["model.safetensors", "clean_model.safetensors"] {
        let weights = format!("{attack}/{file}");
        let out = run_gcleaner(&["predict", "--json", "--device", "cpu", "--model", &weights, "--data", &data]);
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows: Vec<Value> = got["predictions"].as_array().unwrap().iter().map(|r| r["log_probs"].clone()).collect();
        results.push(serde_json::json!({"weights": weights, "log_probs": rows}));
    }

    let results_path = path("results.json");
    std::fs::write(&results_path, serde_json::to_string(&results).unwrap()).unwrap();
    let check =
        Command::new(&python).arg(&script).args(["check", "--graphs", &data, "--results", &results_path]).output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&check.stdout));
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let refusals = dir.path().join("refusals");
    let built = Command::new(&python).arg(&script).args(["refusals", "--out", refusals.to_str().unwrap()]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    for refusal in read_json(&refusals.join("refusals.json")).as_array().unwrap() {
        let weights = refusals.join(refusal["weights"].as_str().unwrap());
        let out = run_gcleaner(&["predict", "--device", "cpu", "--model", weights.to_str().unwrap(), "--data", &data]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: accepted", refusal["name"]);
        let module = refusal["module"].as_str().unwrap();
        assert!(stderr.contains(&format!("cannot map module \"{module}\"")), "{}: {stderr}", refusal["name"]);
    }
}
