//! Interop with PyTorch Geometric: tests/interop/pyg_reference.py builds the four published
//! architectures in PyG, saves random and briefly trained weights as safetensors (spec embedded)
//! and records PyG's log-probabilities on random graphs; every file must load here and give the
//! same log-probabilities within 1e-4.
//!
//! Skipped, with the reason printed, when the venv or torch_geometric is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use gcleaner_engine::models::{GnnModel, GraphInput};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python when it can import torch_geometric and safetensors, or why not.
fn reference_python() -> Result<PathBuf, String> {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        return Err(format!("{} not found (run `make setup`)", python.display()));
    }
    let probe = Command::new(&python)
        .args(["-c", "import torch_geometric, safetensors"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "torch_geometric/safetensors not importable ({}); `make test` installs them",
            String::from_utf8_lossy(&probe.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(python)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs tests/interop/`script` with `args` then `--out DIR` on the venv's python, asserting that
/// it succeeds: the python, the script's path and DIR. `None` when the venv cannot run PyG (the
/// test is skipped, saying why).
fn run_reference(script: &str, args: &[&str]) -> Option<(PathBuf, PathBuf, tempfile::TempDir)> {
    let python = match reference_python() {
        Ok(p) => p,
        Err(reason) => {
            eprintln!("skipping PyG interop test: {reason}");
            return None;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let script = repo_root().join("tests/interop").join(script);
    let run = Command::new(&python).arg(&script).args(args).arg("--out").arg(dir.path()).output().expect("run reference script");
    assert!(run.status.success(), "{} {args:?} failed:\n{}", script.display(), String::from_utf8_lossy(&run.stderr));
    Some((python, script, dir))
}

/// The batch exactly as the script builds it: node attributes stacked, per graph its edges and
/// then the same edges reversed, offsets by node count.
struct Batch {
    x: Tensor,
    edge_index: Tensor,
    batch: Tensor,
    num_graphs: i64,
}

fn build_batch(graphs: &[Value], edge_weights: Option<&[Value]>) -> (Batch, Option<Tensor>) {
    let (mut x, mut src, mut dst, mut batch) = (Vec::<f32>::new(), Vec::<i64>::new(), Vec::<i64>::new(), Vec::<i64>::new());
    let mut weights = Vec::<f32>::new();
    let mut offset = 0i64;
    for (gi, g) in graphs.iter().enumerate() {
        let n = g["num_nodes"].as_i64().expect("num_nodes");
        for row in g["node_attributes"].as_array().expect("node_attributes") {
            x.extend(row.as_array().expect("row").iter().map(|v| v.as_f64().expect("attr") as f32));
        }
        let edges: Vec<(i64, i64)> = g["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| (e[0].as_i64().expect("u") + offset, e[1].as_i64().expect("v") + offset))
            .collect();
        src.extend(edges.iter().map(|e| e.0).chain(edges.iter().map(|e| e.1)));
        dst.extend(edges.iter().map(|e| e.1).chain(edges.iter().map(|e| e.0)));
        if let Some(w) = edge_weights {
            let w: Vec<f32> = w[gi].as_array().expect("weights").iter().map(|v| v.as_f64().expect("w") as f32).collect();
            assert_eq!(w.len(), edges.len());
            weights.extend(w.iter().chain(w.iter()));
        }
        batch.extend(std::iter::repeat_n(gi as i64, n as usize));
        offset += n;
    }
    let dim = x.len() as i64 / offset;
    let e = src.len() as i64;
    let input = Batch {
        x: Tensor::from_slice(&x).view([offset, dim]),
        edge_index: Tensor::cat(&[Tensor::from_slice(&src), Tensor::from_slice(&dst)], 0).view([2, e]),
        batch: Tensor::from_slice(&batch),
        num_graphs: graphs.len() as i64,
    };
    (input, edge_weights.map(|_| Tensor::from_slice(&weights)))
}

fn max_abs_diff(actual: &Tensor, expected: &Value) -> f64 {
    let rows = expected.as_array().expect("log_probs rows");
    let flat: Vec<f32> =
        rows.iter().flat_map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().expect("value") as f32)).collect();
    let expected = Tensor::from_slice(&flat).view([rows.len() as i64, -1]);
    assert_eq!(actual.size(), expected.size(), "log_probs shape");
    (actual - expected).abs().max().double_value(&[])
}

#[test]
fn pyg_saved_models_predict_the_same_log_probabilities() {
    let Some((_, _, dir)) = run_reference("pyg_reference.py", &[]) else { return };

    let expected = read_json(&dir.path().join("expected.json"));
    let graphs_doc = read_json(&dir.path().join("graphs.json"));
    assert_eq!(graphs_doc["format"], "gcleaner.graphs/v1");
    let graphs = graphs_doc["graphs"].as_array().expect("graphs");
    let cases = expected["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8, "expected random and trained cases for four architectures");

    let mut failures = Vec::new();
    let mut seen_archs = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        seen_archs.insert(case["arch"].as_str().expect("arch").to_string());
        let path = dir.path().join(case["weights"].as_str().expect("weights"));
        let loaded = GnnModel::load(&path, None, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_ignored: Vec<String> =
            case["ignored_tensors"].as_array().expect("ignored").iter().map(|v| v.as_str().expect("name").to_string()).collect();
        assert_eq!(loaded.ignored_tensors, want_ignored, "{name}: ignored tensors");

        let weights = case["edge_weights"].as_array().map(|w| w.as_slice());
        let (b, edge_weight) = build_batch(graphs, weights);
        let mut input = GraphInput::new(&b.x, &b.edge_index, &b.batch, b.num_graphs);
        if let Some(w) = &edge_weight {
            input = input.with_edge_weight(w);
        }
        let model = loaded.model;
        let eval = tch::no_grad(|| model.try_forward_t(&input, false)).expect("forward");
        assert_eq!(eval.log_probs.kind(), Kind::Float);
        let diff = max_abs_diff(&eval.log_probs, &case["log_probs"]);
        println!("{name}: eval max |diff| = {diff:.3e}");
        if diff.is_nan() || diff > TOLERANCE {
            failures.push(format!("{name} (eval): {diff:.3e}"));
        }
        if !case["train_log_probs"].is_null() {
            let train = tch::no_grad(|| model.forward_t(&input, true));
            let diff = max_abs_diff(&train.log_probs, &case["train_log_probs"]);
            println!("{name}: train-mode max |diff| = {diff:.3e}");
            if diff.is_nan() || diff > TOLERANCE {
                failures.push(format!("{name} (train mode): {diff:.3e}"));
            }
        }
    }
    assert_eq!(seen_archs.len(), 4, "all four architectures covered: {seen_archs:?}");
    assert!(failures.is_empty(), "log-probabilities differ from PyG by more than {TOLERANCE}: {failures:?}");
}

/// A row of the "PyG model classes" table: the largest eval and train-mode difference of every
/// case with a given option value, per architecture.
#[derive(Default)]
struct OptionTable {
    rows: std::collections::BTreeMap<(String, String), std::collections::BTreeMap<String, f64>>,
}

impl OptionTable {
    fn record(&mut self, arch: &str, options: &Value, diff: f64) {
        let mut keys = vec![("model".to_string(), "all".to_string())];
        for key in ["jk", "pool", "head", "norm"] {
            keys.push((key.to_string(), options[key].as_str().unwrap_or("?").to_string()));
        }
        if !options["out_channels"].is_null() {
            keys.push(("out_channels".into(), "set".into()));
        }
        for flag in ["act_first", "edge_weights"] {
            if options[flag].as_bool() == Some(true) {
                keys.push((flag.into(), "true".into()));
            }
        }
        if options["num_layers"].as_u64() == Some(1) {
            keys.push(("num_layers".into(), "1".into()));
        }
        if options["concat"].as_bool() == Some(false) {
            keys.push(("concat".into(), "false".into()));
        }
        for key in keys {
            let cell = self.rows.entry(key).or_default().entry(arch.to_string()).or_insert(0.0);
            *cell = cell.max(diff);
        }
    }

    fn print(&self) {
        let archs = ["GIN", "GCN", "GAT", "GraphSAGE"];
        let order = [
            ("model", "all"),
            ("jk", "none"),
            ("jk", "last"),
            ("jk", "cat"),
            ("jk", "max"),
            ("pool", "add"),
            ("pool", "mean"),
            ("pool", "max"),
            ("head", "mlp_bn"),
            ("head", "mlp"),
            ("head", "linear"),
            ("norm", "batch_norm"),
            ("norm", "none"),
            ("out_channels", "set"),
            ("act_first", "true"),
            ("num_layers", "1"),
            ("concat", "false"),
            ("edge_weights", "true"),
        ];
        println!("| option | {} |", archs.join(" | "));
        println!("|---|{}", "---|".repeat(archs.len()));
        for (key, value) in order {
            let Some(cells) = self.rows.get(&(key.to_string(), value.to_string())) else { continue };
            let cells: Vec<String> = archs.iter().map(|a| cells.get(*a).map_or("–".into(), |d| format!("{d:.1e}"))).collect();
            println!("| {key} = {value} | {} |", cells.join(" | "));
        }
    }
}

/// Models built from PyG's own classes (tests/interop/pyg_models.py: `torch_geometric.nn.models`
/// GIN, GCN, GAT, GraphSAGE with every jk mode, pooling and head) load from their state_dicts
/// and predict PyG's log-probabilities in eval and train mode; trained and saved here, each
/// loads back into the same PyG class with `load_state_dict(strict=True)` and predicts what
/// gcleaner predicts; models with modules gcleaner cannot run are refused, naming the module.
#[test]
fn pyg_model_classes_predict_the_same_and_load_back_strictly() {
    use gcleaner_engine::data::{load_dataset, make_batches};
    use gcleaner_engine::progress::NoProgress;
    use gcleaner_engine::train::{train, TrainConfig};

    let Some((python, script, dir)) = run_reference("pyg_models.py", &["build"]) else { return };

    let expected = read_json(&dir.path().join("expected.json"));
    let graphs_path = dir.path().join("graphs.json");
    let graphs_doc = read_json(&graphs_path);
    let graphs = graphs_doc["graphs"].as_array().expect("graphs");
    let dataset = load_dataset(&graphs_path).expect("graphs.json");
    let cases = expected["cases"].as_array().expect("cases");
    assert!(cases.len() >= 144, "every architecture x jk x pool x head");

    let trained_dir = dir.path().join("trained");
    std::fs::create_dir(&trained_dir).unwrap();
    let mut failures = Vec::new();
    let mut table = OptionTable::default();
    let mut results = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let arch = case["arch"].as_str().expect("arch");
        let path = dir.path().join(case["weights"].as_str().expect("weights"));
        let loaded = GnnModel::load(&path, None, Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.ignored_tensors.is_empty(), "{name}: {:?}", loaded.ignored_tensors);
        let mut model = loaded.model;
        let weights = case["edge_weights"].as_array().map(|w| w.as_slice());
        let (b, edge_weight) = build_batch(graphs, weights);
        let mut input = GraphInput::new(&b.x, &b.edge_index, &b.batch, b.num_graphs);
        if let Some(w) = &edge_weight {
            input = input.with_edge_weight(w);
        }
        let eval = tch::no_grad(|| model.try_forward_t(&input, false)).expect("forward");
        let eval_diff = max_abs_diff(&eval.log_probs, &case["log_probs"]);
        let train_out = tch::no_grad(|| model.forward_t(&input, true));
        let train_diff = max_abs_diff(&train_out.log_probs, &case["train_log_probs"]);
        println!("{name}: eval {eval_diff:.2e}, train mode {train_diff:.2e}");
        for (mode, diff) in [("eval", eval_diff), ("train mode", train_diff)] {
            if diff.is_nan() || diff > TOLERANCE {
                failures.push(format!("{name} ({mode}): {diff:.3e}"));
            }
        }
        table.record(arch, &case["options"], eval_diff.max(train_diff));

        // Trained here (the engine's training loop), saved, and handed back to PyG.
        let order: Vec<usize> = (0..dataset.graphs.len()).collect();
        let batches = make_batches(&dataset, &order, 8, &model.spec().features.clone(), Device::Cpu).expect("batches");
        let config = TrainConfig { epochs: 1, lr: 0.01, lr_step: 50, lr_gamma: 0.5, weight_decay: 0.0, seed: 1 };
        train(&mut model, &batches, &config, &mut NoProgress).unwrap_or_else(|e| panic!("{name}: training: {e}"));
        let saved = trained_dir.join(format!("{name}.safetensors"));
        model.save(&saved).expect("save");
        let (plain, _) = build_batch(graphs, None);
        let plain_input = GraphInput::new(&plain.x, &plain.edge_index, &plain.batch, plain.num_graphs);
        let after = tch::no_grad(|| model.forward_t(&plain_input, false)).log_probs;
        let rows: Vec<Vec<f32>> = (0..after.size()[0]).map(|i| Vec::<f32>::try_from(after.get(i)).unwrap()).collect();
        results.push(serde_json::json!({"weights": saved, "log_probs": rows}));
    }

    let results_path = dir.path().join("gcleaner_results.json");
    std::fs::write(&results_path, serde_json::to_string(&results).unwrap()).unwrap();
    let check = Command::new(&python)
        .arg(&script)
        .args(["check", "--graphs"])
        .arg(&graphs_path)
        .arg("--results")
        .arg(&results_path)
        .output()
        .expect("run check");
    let check_out = String::from_utf8_lossy(&check.stdout);
    let strict_ok = check_out.lines().filter(|l| l.contains("strict load ok")).count();
    let largest =
        check_out.lines().filter_map(|l| l.rsplit_once("max |diff| ")?.1.trim().parse::<f64>().ok()).fold(0.0, f64::max);
    println!("PyG strict load-back: {strict_ok} of {} trained models, largest |diff| {largest:.1e}", results.len());
    if !check.status.success() {
        failures.push(format!("PyG strict load-back failed:\n{}", String::from_utf8_lossy(&check.stderr)));
    }

    for refusal in expected["refusals"].as_array().expect("refusals") {
        let name = refusal["name"].as_str().unwrap();
        let path = dir.path().join(refusal["weights"].as_str().unwrap());
        let module = refusal["module"].as_str().unwrap();
        match GnnModel::load(&path, None, Device::Cpu) {
            Ok(_) => failures.push(format!("{name}: loaded, but it holds module {module} gcleaner cannot run")),
            Err(e) => {
                let message = e.to_string();
                println!("{name}: refused: {message}");
                if !message.contains(&format!("cannot map module \"{module}\"")) {
                    failures.push(format!("{name}: the refusal does not name {module}: {message}"));
                }
            }
        }
    }
    table.print();
    assert!(failures.is_empty(), "{} failure(s): {failures:#?}", failures.len());
}

/// The four baseline defences run on models built from PyG's classes (no PyG needed: the
/// specs are written here), each giving a defended model that still predicts every graph.
#[test]
fn baselines_run_on_pyg_model_classes() {
    use gcleaner_engine::baselines::{self, BaselineConfig, DefenceKind, FinetuneScope};
    use gcleaner_engine::data::{make_batches, synthetic};
    use gcleaner_engine::models::ModelSpec;
    use gcleaner_engine::progress::NoProgress;
    use gcleaner_engine::train::{train, TrainConfig};

    tch::set_num_threads(1);
    let ds = synthetic::generate(40, 3);
    let indices: Vec<usize> = (0..ds.graphs.len()).collect();
    let mut config = BaselineConfig::default();
    config.finetune.epochs = 2;
    config.finetune.scope = FinetuneScope::LastConvAndHead;
    config.abl.isolation_epochs = 2;
    config.abl.training_epochs = 2;
    config.abl.unlearning_epochs = 2;
    config.abl.isolation_ratio = 0.1;
    config.smoothing.samples = 3;
    let models = [
        (
            r#"{"class": "GIN", "hidden_channels": 8, "num_layers": 2, "norm": "batch_norm", "jk": "cat", "train_eps": true}"#,
            "max",
            r#"{"class": "MLP", "channel_list": [8, 8, 2]}"#,
        ),
        (r#"{"class": "GCN", "hidden_channels": 8, "num_layers": 2, "out_channels": 4}"#, "mean", r#"{"class": "Linear"}"#),
        (
            r#"{"class": "GAT", "hidden_channels": 8, "num_layers": 2, "heads": 2, "jk": "max"}"#,
            "add",
            r#"{"class": "MLP", "channel_list": [8, 2], "norm": null}"#,
        ),
        (
            r#"{"class": "GraphSAGE", "hidden_channels": 8, "num_layers": 3, "norm": "batch_norm", "jk": "last"}"#,
            "mean",
            r#"{"class": "MLP", "channel_list": [8, 4, 2]}"#,
        ),
    ];
    for (gnn, pool, head) in models {
        let spec = ModelSpec::from_json(&format!(
            r#"{{"format": "gcleaner.model/v2", "in_features": 2, "num_classes": 2,
                "features": {{"kind": "node_attributes", "dim": 2}}, "gnn": {gnn}, "pool": "{pool}", "head": {head}}}"#
        ))
        .expect("spec");
        let _seed = gcleaner_engine::rng::seed_torch(5);
        let mut model = GnnModel::new(spec.clone(), Device::Cpu).expect("model");
        drop(_seed);
        let batches = make_batches(&ds, &indices, 16, &spec.features, Device::Cpu).expect("batches");
        let train_config = TrainConfig { epochs: 2, ..TrainConfig::default() };
        train(&mut model, &batches, &train_config, &mut NoProgress).expect("train");
        for kind in DefenceKind::ALL {
            let defended = baselines::run(kind, &model, &ds, Some((&ds, &indices)), &config, 1, &mut NoProgress)
                .unwrap_or_else(|e| panic!("{gnn}: {}: {e}", kind.name()));
            let predictions = defended.predict_indices(&ds, &indices).expect("predict");
            assert_eq!(predictions.len(), ds.graphs.len(), "{gnn}: {}", kind.name());
            assert!(defended.model().spec().is_pyg(), "{gnn}: {}", kind.name());
            if kind == DefenceKind::Finetune {
                // Fine-tuning the last conv and the head leaves the first conv as it was.
                let (before, after) = (model.var_store().variables(), defended.model().var_store().variables());
                let changed = |prefix: &str| {
                    before
                        .iter()
                        .filter(|(n, _)| n.starts_with(prefix))
                        .any(|(n, v)| v.to_kind(Kind::Float) != after[n].to_kind(Kind::Float))
                };
                assert!(!changed("gnn.convs.0.") && changed("head."), "{gnn}: fine-tuning changed the wrong parameters");
            }
        }
    }
}
