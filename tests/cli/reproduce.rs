//! `gcleaner reproduce` end to end on a generated dataset: one cell per attack and seed with
//! every requested defence measured, the table printed, and a second run resuming from the
//! JSON file (nothing is run again) while a newly requested defence is added to the cells.

use std::process::{Command, Output};

use serde_json::Value;

fn gcleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gcleaner")).args(args).output().unwrap()
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn reproduce_measures_every_defence_and_resumes_from_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = gcleaner(&["synth", "--graphs", "150", "--seed", "3", "--out", &format!("{root}/synthetic.json")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = dir.path().join("results.json");
    let args = |defenses: &str| {
        vec![
            "reproduce".to_string(),
            "--datasets".into(),
            root.into(),
            "--dataset".into(),
            "synthetic.json".into(),
            "--attacks".into(),
            "subgraph".into(),
            "--defenses".into(),
            defenses.into(),
            "--seeds".into(),
            "1".into(),
            "--epochs".into(),
            "3".into(),
            "--device".into(),
            "cpu".into(),
            "--json".into(),
            json.to_str().unwrap().into(),
        ]
    };
    let run = |defenses: &str| {
        let a = args(defenses);
        let out = gcleaner(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };

    let (table, _) = run("finetune,prune");
    let results = read(&json);
    assert_eq!(results["format"], "gcleaner.reproduce/v1");
    let cells = results["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1);
    let cell = &cells[0];
    assert_eq!(cell["attack"], "subgraph");
    for who in ["backdoored", "clean_model"] {
        assert!((0.0..=1.0).contains(&cell[who]["asr"].as_f64().unwrap()), "{cell}");
    }
    for defence in ["finetune", "prune"] {
        let m = &cell["defenses"][defence];
        for key in ["asr", "accuracy", "balanced_accuracy", "target_recall"] {
            let v = m[key].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{defence}.{key}: {m}");
        }
    }
    for row in ["clean model", "backdoored", "finetune", "prune"] {
        assert!(table.contains(row), "{row} missing from the table:\n{table}");
    }

    // Resumed: the finished defences are kept as they were; only the new one runs.
    let (_, log) = run("finetune,prune,smoothing");
    let again = read(&json);
    let cell2 = &again["cells"][0];
    assert_eq!(cell2["defenses"]["finetune"], cell["defenses"]["finetune"]);
    assert!(cell2["defenses"]["smoothing"]["asr"].is_number(), "{cell2}");
    assert!(!log.contains(" finetune "), "finetune ran again:\n{log}");
    let (_, log) = run("finetune,prune,smoothing");
    assert!(!log.contains("ASR"), "a finished grid ran again:\n{log}");
}
