//! Tests of models built from PyG's classes (v2 specs): the spec's JSON, the tensors a spec
//! implies, the frozen-prefix split, parameter groups, saving and refusing files.

use tch::{Device, Kind};

use super::test_support::{random_batch, values};
use super::weights::{expected_tensors, TensorRole};
use super::{block_of_variable, GnnModel, ModelSpec, Pooling};

const CLASSES: [&str; 4] = ["GIN", "GCN", "GAT", "GraphSAGE"];

/// A v2 spec: 5 input features, 3 classes, `gnn` and `head` as JSON fragments.
fn spec_json(gnn: &str, pool: &str, head: &str) -> String {
    format!(
        r#"{{"format":"gcleaner.model/v2","in_features":5,"num_classes":3,
            "features":{{"kind":"node_attributes","dim":5}},"gnn":{gnn},"pool":"{pool}","head":{head}}}"#
    )
}

fn spec(gnn: &str, pool: &str, head: &str) -> ModelSpec {
    let text = spec_json(gnn, pool, head);
    ModelSpec::from_json(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Every combination the interop test covers, small: (label, spec).
fn variants() -> Vec<(String, ModelSpec)> {
    let mut out = Vec::new();
    for class in CLASSES {
        let heads = if class == "GAT" { r#","heads":2"# } else { "" };
        for jk in ["null", r#""last""#, r#""cat""#, r#""max""#] {
            for (norm, out_channels) in [("null", "null"), (r#""batch_norm""#, "6")] {
                let gnn = format!(
                    r#"{{"class":"{class}","hidden_channels":8,"num_layers":3,"out_channels":{out_channels},"norm":{norm},"jk":{jk}{heads}}}"#
                );
                let width = if out_channels == "null" { 8 } else { 6 };
                for (pool, head) in [
                    ("add", format!(r#"{{"class":"MLP","channel_list":[{width},4,3]}}"#)),
                    ("max", format!(r#"{{"class":"MLP","channel_list":[{width},4,3],"norm":null,"plain_last":false}}"#)),
                    ("mean", r#"{"class":"Linear"}"#.to_string()),
                ] {
                    out.push((
                        format!("{class} jk={jk} norm={norm} out={out_channels} pool={pool} head={head}"),
                        spec(&gnn, pool, &head),
                    ));
                }
            }
        }
    }
    out
}

fn model(spec: &ModelSpec) -> GnnModel {
    let _torch_seed = crate::rng::seed_torch(11);
    GnnModel::new(spec.clone(), Device::Cpu).expect("model")
}

#[test]
fn a_v2_spec_round_trips_and_fills_in_pyg_defaults() {
    let s = spec(r#"{"class":"GIN","hidden_channels":8,"num_layers":2}"#, "add", r#"{"class":"MLP","channel_list":[8,3]}"#);
    let pyg = s.pyg.as_ref().expect("v2");
    assert_eq!((s.hidden, s.num_layers, s.pooling), (8, 2, Pooling::Sum));
    assert_eq!((pyg.norm, pyg.jk, pyg.out_channels, pyg.train_eps), (None, None, None, false));
    let super::PygHead::Mlp(mlp) = &pyg.head else { panic!("an MLP head") };
    // PyG's MLP defaults to batch norm, its BasicGNN to none.
    assert_eq!((mlp.norm, mlp.plain_last, mlp.bias), (Some(super::Norm::BatchNorm), true, true));
    let back = ModelSpec::from_json(&s.to_json()).unwrap();
    assert_eq!(back, s);
    let written: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(written["format"], "gcleaner.model/v2");
    assert_eq!(written["gnn"]["class"], "GIN");
    assert_eq!(written["pool"], "add");
    for (_, s) in variants() {
        assert_eq!(ModelSpec::from_json(&s.to_json()).unwrap(), s);
    }
}

#[test]
fn v2_specs_that_pyg_or_gcleaner_cannot_run_are_refused_by_name() {
    let gin = r#"{"class":"GIN","hidden_channels":8,"num_layers":2}"#;
    let mlp = r#"{"class":"MLP","channel_list":[8,3]}"#;
    let cases = [
        (r#"{"class":"GCN","hidden_channels":8,"num_layers":2,"train_eps":true}"#, "add", mlp, "train_eps"),
        (r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"heads":2}"#, "add", mlp, "heads"),
        (r#"{"class":"GAT","hidden_channels":8,"num_layers":2,"heads":3}"#, "add", mlp, "divisible"),
        (r#"{"class":"GAT","hidden_channels":8,"num_layers":2,"edge_dim":3}"#, "add", mlp, "edge_dim"),
        (r#"{"class":"GAT","hidden_channels":8,"num_layers":2,"v2":true}"#, "add", mlp, "v2"),
        (r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"jk":"lstm"}"#, "add", mlp, "lstm"),
        (r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"act":"tanh"}"#, "add", mlp, "tanh"),
        (r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"norm":"layer_norm"}"#, "add", mlp, "layer_norm"),
        (r#"{"class":"PNA","hidden_channels":8,"num_layers":2}"#, "add", mlp, "PNA"),
        (r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"in_channels":4}"#, "add", mlp, "in_channels"),
        (gin, "sort", mlp, "sort"),
        (gin, "add", r#"{"class":"MLP","channel_list":[6,3]}"#, "starts with 6"),
        (gin, "add", r#"{"class":"MLP","channel_list":[8,2]}"#, "ends with 2"),
        (gin, "add", r#"{"class":"Linear","out_features":2}"#, "out_features"),
        (gin, "add", r#"{"class":"Sequential"}"#, "Sequential"),
        (gin, "add", r#"{"class":"MLP","channel_list":[8,3],"act":"gelu"}"#, "gelu"),
    ];
    for (gnn, pool, head, needle) in cases {
        let err = ModelSpec::from_json(&spec_json(gnn, pool, head)).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    let mut too_wide = spec(gin, "add", mlp);
    too_wide.hidden = 4096;
    too_wide.num_layers = 64;
    too_wide.pyg.as_mut().unwrap().jk = Some(super::JumpingKnowledge::Cat);
    too_wide.pyg.as_mut().unwrap().head = super::PygHead::Linear { bias: true };
    assert!(too_wide.validate().unwrap_err().to_string().contains("values, more than"));
    // A v1 spec cannot pool by max, and the two formats are not interchangeable.
    let mut v1 = ModelSpec::published(super::Arch::Gin, 5, 8, 3, crate::data::FeatureSpec::NodeAttributes { dim: 5 });
    v1.pooling = Pooling::Max;
    assert!(v1.validate().unwrap_err().to_string().contains("max"));
    let mut mislabelled = spec(gin, "add", mlp);
    mislabelled.format = super::SPEC_FORMAT.to_string();
    assert!(mislabelled.validate().unwrap_err().to_string().contains("gcleaner.model/v2"));
}

#[test]
fn expected_tensors_are_exactly_the_models_variables() {
    for (label, s) in variants() {
        let m = model(&s);
        let vars = m.var_store().variables();
        let expected = expected_tensors(m.spec());
        assert_eq!(vars.len(), expected.len(), "{label}: {:?}", vars.keys().collect::<Vec<_>>());
        for want in expected {
            let var = vars.get(&want.name).unwrap_or_else(|| panic!("{label}: no variable {}", want.name));
            let shape: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
            assert_eq!(shape, want.shape, "{label} {}", want.name);
            let kind = if want.role == TensorRole::Counter { Kind::Int64 } else { Kind::Float };
            assert_eq!(var.kind(), kind, "{label} {}", want.name);
        }
    }
}

#[test]
fn pyg_names_for_each_option() {
    let names = |gnn: &str, head: &str| {
        let mut n: Vec<String> = model(&spec(gnn, "add", head)).var_store().variables().into_keys().collect();
        n.sort();
        n
    };
    let gin = names(
        r#"{"class":"GIN","hidden_channels":8,"num_layers":2,"norm":"batch_norm","jk":"cat"}"#,
        r#"{"class":"MLP","channel_list":[8,3]}"#,
    );
    for name in [
        "gnn.convs.0.eps",
        "gnn.convs.0.nn.lins.0.weight",
        "gnn.convs.0.nn.norms.0.module.running_var",
        "gnn.convs.1.nn.lins.1.bias",
        "gnn.norms.1.module.num_batches_tracked",
        "gnn.lin.weight",
        "head.lins.0.weight",
    ] {
        assert!(gin.contains(&name.to_string()), "GIN lacks {name}: {gin:?}");
    }
    let gcn = names(r#"{"class":"GCN","hidden_channels":8,"num_layers":2}"#, r#"{"class":"Linear","bias":false}"#);
    assert_eq!(gcn, ["gnn.convs.0.bias", "gnn.convs.0.lin.weight", "gnn.convs.1.bias", "gnn.convs.1.lin.weight", "head.weight"]);
}

#[test]
fn the_frozen_prefix_then_the_rest_is_the_whole_forward_pass() {
    let b = random_batch(5, 2);
    for (label, s) in variants() {
        let m = model(&s);
        let whole = tch::no_grad(|| m.forward_t(&b.input(), false));
        for blocks in 0..=s.num_layers {
            let prefix = m.frozen_prefix(&b.input(), blocks);
            let rest = tch::no_grad(|| m.forward_from(&prefix, blocks, &b.input(), false));
            let diff = (&rest.log_probs - &whole.log_probs).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{label}, {blocks} frozen blocks: {diff}");
            let emb = (&rest.embedding - &whole.embedding).abs().max().double_value(&[]);
            assert!(emb < 1e-5, "{label}, {blocks} frozen blocks: embeddings differ by {emb}");
            assert_eq!(rest.layer_outputs.len(), s.num_layers - blocks, "{label}");
        }
    }
}

#[test]
fn gradients_reach_inputs_edge_weights_and_every_parameter() {
    let b = random_batch(5, 3);
    for (label, s) in variants() {
        let m = model(&s);
        let x = b.x.copy().set_requires_grad(true);
        let w = tch::Tensor::ones([b.edge_index.size()[1]], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let input = super::GraphInput::new(&x, &b.edge_index, &b.batch, b.num_graphs).with_edge_weight(&w);
        let out = m.forward_t(&input, true);
        // The embedding term keeps x's gradient non-zero where a final ReLU zeroes the logits.
        (out.log_probs.select(1, 0).sum(Kind::Float) + out.embedding.sum(Kind::Float)).backward();
        assert!(values(&x.grad()).iter().any(|g| *g != 0.0), "{label}: no gradient on x");
        assert!(w.grad().defined(), "{label}: no gradient on edge weights");
        let vars = m.var_store().variables();
        for name in m.parameter_names() {
            assert!(vars[name].grad().defined(), "{label}: {name} has no gradient");
        }
    }
}

#[test]
fn parameter_groups_follow_the_blocks() {
    let s = spec(
        r#"{"class":"GraphSAGE","hidden_channels":8,"num_layers":3,"norm":"batch_norm","jk":"max"}"#,
        "mean",
        r#"{"class":"MLP","channel_list":[8,4,3]}"#,
    );
    let m = model(&s);
    assert_eq!(block_of_variable("gnn.convs.2.lin_l.weight"), Some(3));
    assert_eq!(block_of_variable("gnn.norms.0.module.weight"), Some(1));
    assert_eq!(block_of_variable("gnn.lin.weight"), None);
    assert_eq!(block_of_variable("conv3.nn.0.weight"), Some(3));
    assert_eq!(block_of_variable("fc1.weight"), None);
    assert_eq!(m.conv_parameter_names(2), ["gnn.convs.2.lin_l.bias", "gnn.convs.2.lin_l.weight", "gnn.convs.2.lin_r.weight"]);
    assert_eq!(
        m.layer_parameter_names(2),
        [
            "gnn.convs.2.lin_l.bias",
            "gnn.convs.2.lin_l.weight",
            "gnn.convs.2.lin_r.weight",
            "gnn.norms.2.module.bias",
            "gnn.norms.2.module.weight"
        ]
    );
    let head = m.head_parameter_names();
    assert!(head.contains(&"gnn.lin.weight".to_string()) && head.contains(&"head.norms.0.module.weight".to_string()));
    assert!(head.iter().all(|n| !n.starts_with("gnn.convs") && !n.starts_with("gnn.norms")));
    m.train_only_last_conv_and_head();
    let trainable: Vec<String> =
        m.var_store().variables().into_iter().filter(|(_, v)| v.requires_grad()).map(|(n, _)| n).collect();
    assert!(trainable.iter().all(|n| !n.starts_with("gnn.convs.0") && !n.starts_with("gnn.convs.1")), "{trainable:?}");
    assert!(trainable.contains(&"gnn.convs.2.lin_l.weight".to_string()) && trainable.contains(&"head.lins.1.bias".to_string()));
}

#[test]
fn saved_models_load_back_identically_and_unmapped_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = random_batch(5, 4);
    for (i, (label, s)) in variants().into_iter().enumerate().filter(|(i, _)| i % 5 == 0) {
        let m = model(&s);
        // Train-mode passes move the running statistics away from their initial values.
        let _ = tch::no_grad(|| m.forward_t(&b.input(), true));
        let path = dir.path().join(format!("m{i}.safetensors"));
        m.save(&path).unwrap();
        let loaded = GnnModel::load(&path, None, Device::Cpu).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(loaded.ignored_tensors.is_empty());
        assert_eq!(loaded.model.spec(), &s);
        let (a, c) =
            tch::no_grad(|| (m.forward_t(&b.input(), false).log_probs, loaded.model.forward_t(&b.input(), false).log_probs));
        assert_eq!(values(&a), values(&c), "{label}");
    }

    // The same file with one extra tensor: refused, naming the module.
    let s = spec(r#"{"class":"GAT","hidden_channels":8,"num_layers":2}"#, "add", r#"{"class":"Linear"}"#);
    let m = model(&s);
    let path = dir.path().join("gat.safetensors");
    m.save(&path).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(&path).unwrap();
    tensors.push(("gnn.convs.1.lin_edge.weight".into(), tch::Tensor::zeros([8, 3], (Kind::Float, Device::Cpu))));
    tensors.push(("gnn.convs.0.att_edge".into(), tch::Tensor::zeros([1, 1, 8], (Kind::Float, Device::Cpu))));
    let extra = dir.path().join("extra.safetensors");
    write_with_spec(&extra, &tensors, &s);
    let err = GnnModel::load(&extra, None, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("cannot map module \"gnn.convs.0\" (tensor \"gnn.convs.0.att_edge\""), "{err}");
    assert!(err.contains("edge features") && err.contains("1 more"), "{err}");
    let err = super::weights::inspect(&extra).unwrap_err().to_string();
    assert!(err.contains("cannot map module"), "{err}");
}

fn write_with_spec(path: &std::path::Path, tensors: &[(String, tch::Tensor)], spec: &ModelSpec) {
    use safetensors::tensor::{Dtype, TensorView};
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            if t.kind() == Kind::Int64 {
                let v = Vec::<i64>::try_from(t.flatten(0, -1)).unwrap();
                (name.clone(), Dtype::I64, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            } else {
                let v = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
                (name.clone(), Dtype::F32, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> =
        encoded.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let metadata = Some(std::collections::HashMap::from([(super::SPEC_METADATA_KEY.to_string(), spec.to_json())]));
    safetensors::serialize_to_file(views, &metadata, path).unwrap();
}
