//! Tests of the whole-model API: shapes, batching, gradients, cloning, freezing.

use tch::{Device, Kind, Tensor};

use super::test_support::{random_batch, spec, values, TinyBatch};
use super::weights::{expected_tensors, TensorRole};
use super::{Arch, GnnModel, GraphInput};

const ARCHS: [Arch; 4] = [Arch::Gin, Arch::Gcn, Arch::Gat, Arch::Sage];

fn model(arch: Arch) -> GnnModel {
    let _torch_seed = crate::rng::seed_torch(3);
    GnnModel::new(spec(arch, 5, 8, 3), Device::Cpu).expect("model")
}

#[test]
fn expected_tensors_are_exactly_the_models_variables() {
    for arch in ARCHS {
        let m = model(arch);
        let vars = m.var_store().variables();
        let expected = expected_tensors(m.spec());
        assert_eq!(vars.len(), expected.len(), "{arch:?}");
        for want in expected {
            let var = vars.get(&want.name).unwrap_or_else(|| panic!("{arch:?}: no variable {}", want.name));
            let shape: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
            assert_eq!(shape, want.shape, "{arch:?} {}", want.name);
            let kind = if want.role == TensorRole::Counter { Kind::Int64 } else { Kind::Float };
            assert_eq!(var.kind(), kind, "{arch:?} {}", want.name);
        }
    }
}

#[test]
fn published_names_and_layer_counts() {
    let names = |arch| {
        let mut n: Vec<String> = model(arch).var_store().variables().into_keys().collect();
        n.sort();
        n
    };
    let gin = names(Arch::Gin);
    for name in ["conv1.eps", "conv5.nn.0.weight", "conv5.nn.2.bias", "bn5.num_batches_tracked", "fc1.weight", "fc2.bias"] {
        assert!(gin.contains(&name.to_string()), "gin lacks {name}");
    }
    assert!(!gin.iter().any(|n| n.starts_with("conv6")));
    let gcn = names(Arch::Gcn);
    assert!(gcn.contains(&"conv3.lin.weight".to_string()) && gcn.contains(&"conv3.bias".to_string()));
    assert!(!gcn.iter().any(|n| n.starts_with("bn") || n.starts_with("conv4")));
    let gat = names(Arch::Gat);
    assert!(["conv3.att_src", "conv3.att_dst", "conv3.lin.weight", "conv3.bias"].iter().all(|n| gat.contains(&n.to_string())));
    let sage = names(Arch::Sage);
    assert!(sage.contains(&"conv7.lin_l.bias".to_string()) && sage.contains(&"conv7.lin_r.weight".to_string()));
    assert!(!sage.contains(&"conv7.lin_r.bias".to_string()));
}

#[test]
fn forward_exposes_layers_embedding_logits_and_normalised_log_probs() {
    let b = random_batch(5, 1);
    for arch in ARCHS {
        let m = model(arch);
        let out = tch::no_grad(|| m.try_forward_t(&b.input(), false)).expect("forward");
        assert_eq!(out.layer_outputs.len(), arch.default_layers(), "{arch:?}");
        for layer in &out.layer_outputs {
            assert_eq!(layer.size(), [13, 8]);
        }
        assert_eq!(out.embedding.size(), [4, 8]);
        assert_eq!(out.logits.size(), [4, 3]);
        let total_prob = values(&out.log_probs.exp().sum_dim_intlist(1, false, None::<Kind>));
        assert!(total_prob.iter().all(|p| (p - 1.0).abs() < 1e-5), "{arch:?}: {total_prob:?}");
        assert_eq!(values(&m.head(&out.embedding)), values(&out.logits), "{arch:?}: head(embedding) == logits");
        let manual = &out.logits - out.logits.logsumexp([1i64].as_slice(), true);
        assert!((manual - &out.log_probs).abs().max().double_value(&[]) < 1e-5, "{arch:?}: log_softmax of the logits");
    }
}

#[test]
fn unit_edge_weights_equal_no_weights() {
    let b = random_batch(5, 2);
    let ones = Tensor::ones([b.edge_index.size()[1]], (Kind::Float, Device::Cpu));
    for arch in ARCHS {
        let m = model(arch);
        let plain = tch::no_grad(|| m.forward_t(&b.input(), false));
        let weighted = tch::no_grad(|| m.forward_t(&b.input().with_edge_weight(&ones), false));
        let diff = (&plain.log_probs - &weighted.log_probs).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{arch:?}: {diff}");
    }
}

#[test]
fn a_graph_gets_the_same_output_alone_and_inside_a_batch() {
    let b = random_batch(5, 4);
    let x = values(&b.x);
    // The last graph of random_batch: 5 nodes starting at node 8, edges as in random_batch.
    let alone = TinyBatch::new(&[(5, vec![(0, 1), (1, 2), (2, 3), (3, 4), (0, 2)])], &x[8 * 5..]);
    for arch in ARCHS {
        let m = model(arch);
        let batched = tch::no_grad(|| m.forward_t(&b.input(), false)).logits.get(3);
        let single = tch::no_grad(|| m.forward_t(&alone.input(), false)).logits.get(0);
        // Relative: summation order differs between the two batches.
        let scale = single.abs().max().double_value(&[]).max(1.0);
        let diff = (batched - single).abs().max().double_value(&[]) / scale;
        assert!(diff < 1e-5, "{arch:?}: relative difference {diff} (scale {scale})");
    }
}

#[test]
fn gradients_reach_node_features_edge_weights_and_layer_outputs() {
    let b = random_batch(5, 5);
    for arch in ARCHS {
        for train in [false, true] {
            let m = model(arch);
            let x = b.x.copy().set_requires_grad(true);
            let w = Tensor::ones([b.edge_index.size()[1]], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let input =
                GraphInput { x: &x, edge_index: &b.edge_index, edge_weight: Some(&w), batch: &b.batch, num_graphs: b.num_graphs };
            let out = m.forward_t(&input, train);
            let loss = out.log_probs.select(1, 0).sum(Kind::Float);
            let last = out.layer_outputs.last().unwrap();
            let grads = Tensor::run_backward(&[&loss], &[&x, &w, last], false, false);
            for (what, g) in ["x", "edge_weight", "last layer output"].iter().zip(&grads) {
                let norm = g.abs().sum(Kind::Float).double_value(&[]);
                assert!(norm > 0.0 && norm.is_finite(), "{arch:?} train={train}: gradient w.r.t. {what} is {norm}");
            }
        }
    }
}

#[test]
fn train_mode_updates_batch_norm_statistics_and_eval_mode_does_not() {
    let b = random_batch(5, 6);
    for arch in [Arch::Gin, Arch::Sage] {
        let m = model(arch);
        let running = |m: &GnnModel| values(&m.var_store().variables()["bn1.running_mean"]);
        let before = running(&m);
        tch::no_grad(|| m.forward_t(&b.input(), false));
        assert_eq!(running(&m), before, "{arch:?}: eval changed running_mean");
        tch::no_grad(|| m.forward_t(&b.input(), true));
        assert_ne!(running(&m), before, "{arch:?}: train did not update running_mean");
        assert_eq!(m.var_store().variables()["bn1.num_batches_tracked"].int64_value(&[]), 1);
    }
}

#[test]
fn try_clone_is_a_deep_copy() {
    let b = random_batch(5, 7);
    for arch in ARCHS {
        let m = model(arch);
        m.train_only_last_conv_and_head();
        let copy = m.try_clone().expect("clone");
        let out = |m: &GnnModel| values(&tch::no_grad(|| m.forward_t(&b.input(), false)).log_probs);
        assert_eq!(out(&m), out(&copy), "{arch:?}");
        for (name, var) in copy.var_store().variables() {
            assert_eq!(var.requires_grad(), m.var_store().variables()[&name].requires_grad(), "{arch:?} {name}");
        }
        tch::no_grad(|| {
            for (_, mut var) in copy.var_store().variables() {
                if var.kind() == Kind::Float {
                    let _ = var.fill_(0.5);
                }
            }
        });
        assert_ne!(out(&m), out(&copy), "{arch:?}: changing the copy changed the original");
    }
}

#[test]
fn freezing_keeps_only_the_last_conv_and_the_head_trainable() {
    for arch in ARCHS {
        let m = model(arch);
        m.train_only_last_conv_and_head();
        let last = format!("conv{}.", arch.default_layers());
        let vars = m.var_store().variables();
        for name in m.parameter_names() {
            let trainable = name.starts_with(&last) || name.starts_with("fc");
            assert_eq!(vars[name].requires_grad(), trainable, "{arch:?} {name}");
        }
        assert!(!m.head_parameter_names().is_empty() && !m.conv_parameter_names(0).is_empty());
        m.set_all_trainable();
        assert!(m.parameter_names().iter().all(|n| vars[n].requires_grad()));
        // Buffers are never parameters.
        assert!(!m.parameter_names().iter().any(|n| n.contains("running") || n.ends_with("eps") || n.contains("num_batches")));
        let err = m.set_trainable(&["conv99.weight".to_string()]).unwrap_err().to_string();
        assert!(err.contains("conv99.weight"), "{err}");
    }
    let gin = model(Arch::Gin);
    assert_eq!(gin.layer_parameter_names(0).len(), 4 + 2, "conv1 (two linears) + bn1 weight/bias");
}

#[test]
fn check_rejects_malformed_inputs_with_a_reason() {
    let m = model(Arch::Gin);
    let b = random_batch(5, 8);
    assert!(b.input().check(m.spec(), Device::Cpu).is_ok());
    let wrong_width = Tensor::zeros([13, 4], (Kind::Float, Device::Cpu));
    let err = GraphInput { x: &wrong_width, ..b.input() }.check(m.spec(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("[N, 5]"), "{err}");
    let bad_edges = Tensor::from_slice(&[0i64, 13]).view([2, 1]);
    let err = GraphInput { edge_index: &bad_edges, ..b.input() }.check(m.spec(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("node 13"), "{err}");
    let bad_batch = Tensor::full([13], 4, (Kind::Int64, Device::Cpu));
    let err = GraphInput { batch: &bad_batch, ..b.input() }.check(m.spec(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("graph 4"), "{err}");
    let short_weights = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let err = b.input().with_edge_weight(&short_weights).check(m.spec(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("edge_weight"), "{err}");
    let int_x = Tensor::zeros([13, 5], (Kind::Int64, Device::Cpu));
    assert!(m.try_forward_t(&GraphInput { x: &int_x, ..b.input() }, false).is_err());
}

#[test]
fn new_refuses_an_invalid_spec() {
    let mut s = spec(Arch::Gin, 5, 8, 3);
    s.hidden = 100_000;
    s.num_layers = 0;
    let err = GnnModel::new(s, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("hidden") && err.contains("num_layers"), "{err}");
}
