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
