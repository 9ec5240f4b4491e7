//! Tests of safetensors weight I/O: round trips, the saved layout, and every refusal.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor};

use super::test_support::{random_batch, spec, values};
use super::weights::{inspect, load, WeightLimits};
use super::{Arch, GnnModel, ModelSpec, SPEC_METADATA_KEY};

type Entries = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn small_model(arch: Arch) -> GnnModel {
    let _torch_seed = crate::rng::seed_torch(11);
    let m = GnnModel::new(spec(arch, 5, 8, 3), Device::Cpu).expect("model");
    // One train-mode pass so running statistics and counters are not their defaults.
    tch::no_grad(|| m.forward_t(&random_batch(5, 12).input(), true));
    m
}

fn saved(arch: Arch, dir: &Path) -> (GnnModel, PathBuf) {
    let m = small_model(arch);
    let path = dir.join(format!("{}.safetensors", arch.name()));
    m.save(&path).expect("save");
    (m, path)
}

fn read_entries(path: &Path) -> (Entries, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let entries = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec(), view.data().to_vec())))
        .collect();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    (entries, metadata.metadata().clone().unwrap_or_default())
}

fn write_entries(path: &Path, entries: &Entries, metadata: Option<HashMap<String, String>>) {
    let views =
        entries.iter().map(|(name, (dtype, shape, data))| (name.clone(), TensorView::new(*dtype, shape.clone(), data).unwrap()));
    std::fs::write(path, safetensors::serialize(views, &metadata).unwrap()).unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn load_err(path: &Path) -> String {
    GnnModel::load(path, None, Device::Cpu).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn save_then_load_gives_bitwise_equal_outputs_for_every_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let b = random_batch(5, 13);
    for arch in [Arch::Gin, Arch::Gcn, Arch::Gat, Arch::Sage] {
        let (original, path) = saved(arch, dir.path());
        let loaded = GnnModel::load(&path, None, Device::Cpu).expect("load");
        assert!(loaded.ignored_tensors.is_empty(), "{arch:?}: {:?}", loaded.ignored_tensors);
        assert_eq!(loaded.model.spec(), original.spec());
        let out = |m: &GnnModel| values(&tch::no_grad(|| m.forward_t(&b.input(), false)).log_probs);
        assert_eq!(out(&original), out(&loaded.model), "{arch:?}");
        let before = original.var_store().variables();
        for (name, var) in loaded.model.var_store().variables() {
            assert!(var.equal(&before[&name]), "{arch:?}: {name} differs after the round trip");
        }
    }
}

#[test]
fn saved_files_use_pyg_names_f32_i64_counters_and_embed_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (model, path) = saved(Arch::Gin, dir.path());
    let (entries, metadata) = read_entries(&path);
    assert_eq!(entries.len(), model.var_store().len());
    for (name, (dtype, shape, data)) in &entries {
        if name.ends_with("num_batches_tracked") {
            assert_eq!((*dtype, shape.as_slice()), (Dtype::I64, &[][..]), "{name}");
            assert_eq!(i64::from_le_bytes(data.as_slice().try_into().unwrap()), 1, "{name}");
        } else {
            assert_eq!(*dtype, Dtype::F32, "{name}");
        }
    }
    assert_eq!(entries["conv1.nn.0.weight"].1, vec![8, 5]);
    assert_eq!(entries["fc2.weight"].1, vec![3, 8]);
    let embedded = ModelSpec::from_json(&metadata[SPEC_METADATA_KEY]).unwrap();
    assert_eq!(&embedded, model.spec());
    assert_eq!(inspect(&path).unwrap(), embedded);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
}

#[test]
fn pickle_checkpoints_are_refused_by_name_with_conversion_advice() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = saved(Arch::Gcn, dir.path());
    for ext in ["pt", "pth", "bin", "ckpt", "PT"] {
        let path = dir.path().join(format!("model.{ext}"));
        std::fs::copy(&good, &path).unwrap();
        let err = load_err(&path);
        assert!(err.contains("pickle"), "{err}");
        assert!(err.contains("save_file(model.state_dict(), \"model.safetensors\""), "{err}");
        assert!(err.contains(SPEC_METADATA_KEY), "{err}");
        assert!(inspect(&path).is_err());
    }
}

#[test]
fn pickle_checkpoints_are_refused_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("zipped.safetensors");
    std::fs::write(&zip, b"PK\x03\x04\x14\x00\x00\x00\x00\x00archive/data.pkl").unwrap();
    let err = load_err(&zip);
    assert!(err.contains("zip") && err.contains("save_file"), "{err}");
    let pickle = dir.path().join("pickled.safetensors");
    std::fs::write(&pickle, b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.").unwrap();
    let err = load_err(&pickle);
    assert!(err.contains("pickle protocol") && err.contains("save_file"), "{err}");
}

#[test]
fn a_safetensors_header_whose_length_starts_with_0x80_is_not_mistaken_for_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = saved(Arch::Gcn, dir.path());
    let (entries, mut metadata) = read_entries(&good);
    let path = dir.path().join("padded.safetensors");
    let mut found = false;
    for pad in 0..600 {
        metadata.insert("padding".into(), "x".repeat(pad));
        write_entries(&path, &entries, Some(metadata.clone()));
        if std::fs::read(&path).unwrap()[0] == 0x80 {
            found = true;
            break;
        }
    }
    assert!(found, "no padding produced a header length of 128 mod 256");
    assert!(GnnModel::load(&path, None, Device::Cpu).is_ok());
}

#[test]
fn every_bad_tensor_is_named_in_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = saved(Arch::Gin, dir.path());
    let (mut entries, metadata) = read_entries(&good);
    entries.remove("conv2.nn.0.bias");
    let w = entries.get_mut("conv1.nn.0.weight").unwrap();
    w.1 = vec![8, 4];
    w.2.truncate(8 * 4 * 4);
    entries.get_mut("fc1.bias").unwrap().0 = Dtype::I32;
    let fc2 = entries.get_mut("fc2.weight").unwrap();
    let mut v = f32_values(&fc2.2);
    v[2] = f32::NAN;
    fc2.2 = f32_bytes(&v);
    let mean = entries.get_mut("bn1.running_mean").unwrap();
    let mut v = f32_values(&mean.2);
    v[0] = f32::INFINITY;
    mean.2 = f32_bytes(&v);
    let var = entries.get_mut("bn2.running_var").unwrap();
    let mut v = f32_values(&var.2);
    v[1] = -0.5;
    var.2 = f32_bytes(&v);
    entries.insert("bn3.num_batches_tracked".into(), (Dtype::F32, vec![], f32_bytes(&[1.0])));
    let path = dir.path().join("bad.safetensors");
    write_entries(&path, &entries, Some(metadata));

    let err = load_err(&path);
    for needle in [
        "7 problem(s)",
        "conv2.nn.0.bias: missing",
        "conv1.nn.0.weight: shape [8, 4], the spec expects [8, 5]",
        "fc1.bias: dtype I32",
        "fc2.weight: contains NaN or Inf",
        "bn1.running_mean: contains NaN or Inf",
        "bn2.running_var: has negative entries",
        "bn3.num_batches_tracked: dtype F32, expected I64",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert_eq!(inspect(&path).unwrap_err().to_string(), err);
}

#[test]
fn extra_tensors_are_ignored_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = saved(Arch::Gcn, dir.path());
    let (mut entries, metadata) = read_entries(&good);
    entries.insert("conv4.lin.weight".into(), (Dtype::F32, vec![1, 2], f32_bytes(&[1.0, 2.0])));
    entries.insert("bn1.running_mean".into(), (Dtype::F32, vec![2], f32_bytes(&[0.0, 0.0])));
    entries.insert("bn1.num_batches_tracked".into(), (Dtype::I64, vec![], 3i64.to_le_bytes().to_vec()));
    let path = dir.path().join("extra.safetensors");
    write_entries(&path, &entries, Some(metadata));
    let loaded = GnnModel::load(&path, None, Device::Cpu).expect("load");
    assert_eq!(loaded.ignored_tensors, ["bn1.num_batches_tracked", "bn1.running_mean", "conv4.lin.weight"]);
}

#[test]
fn the_spec_comes_from_metadata_or_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let (model, good) = saved(Arch::Sage, dir.path());
    let (entries, _) = read_entries(&good);

    let bare = dir.path().join("bare.safetensors");
    write_entries(&bare, &entries, None);
    let err = load_err(&bare);
    assert!(err.contains("no model spec") && err.contains(SPEC_METADATA_KEY), "{err}");
    let loaded = GnnModel::load(&bare, Some(model.spec().clone()), Device::Cpu).expect("override");
    assert_eq!(loaded.model.spec(), model.spec());

    // An override wins over a (here wrong) embedded spec.
    let mut wrong = model.spec().clone();
    wrong.hidden = 16;
    let mislabelled = dir.path().join("mislabelled.safetensors");
    write_entries(&mislabelled, &entries, Some(HashMap::from([(SPEC_METADATA_KEY.to_string(), wrong.to_json())])));
    let err = load_err(&mislabelled);
    assert!(err.contains("conv1.lin_l.weight: shape [8, 5], the spec expects [16, 5]"), "{err}");
    assert!(GnnModel::load(&mislabelled, Some(model.spec().clone()), Device::Cpu).is_ok());

    let broken = dir.path().join("broken.safetensors");
    write_entries(&broken, &entries, Some(HashMap::from([(SPEC_METADATA_KEY.to_string(), "{\"arch\":".to_string())])));
    assert!(load_err(&broken).contains("embedded spec"));
}

#[test]
fn a_spec_that_disagrees_with_the_tensors_is_refused_with_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let (model, good) = saved(Arch::Gin, dir.path());
    let mut more_classes = model.spec().clone();
    more_classes.num_classes = 4;
    let err = GnnModel::load(&good, Some(more_classes), Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("fc2.weight: shape [3, 8], the spec expects [4, 8]") && err.contains("fc2.bias"), "{err}");
    let mut deeper = model.spec().clone();
    deeper.num_layers = 6;
    let err = GnnModel::load(&good, Some(deeper), Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("conv6.nn.0.weight: missing") && err.contains("bn6.running_var: missing"), "{err}");
    let mut other_arch = model.spec().clone();
    other_arch.arch = Arch::Gcn;
    other_arch.num_layers = 3;
    let err = GnnModel::load(&good, Some(other_arch), Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("gcn spec") && err.contains("conv1.lin.weight: missing"), "{err}");
}

#[test]
fn absurd_specs_are_refused_before_any_tensor_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let (model, good) = saved(Arch::Gin, dir.path());
    let (entries, _) = read_entries(&good);
    let mut value: serde_json::Value = serde_json::from_str(&model.spec().to_json()).unwrap();
    value["hidden"] = serde_json::json!(1_000_000);
    value["num_layers"] = serde_json::json!(100_000);
    let path = dir.path().join("absurd.safetensors");
    write_entries(&path, &entries, Some(HashMap::from([(SPEC_METADATA_KEY.to_string(), value.to_string())])));
    let err = load_err(&path);
    assert!(err.contains("hidden must be between 1 and 4096") && err.contains("num_layers must be between 1 and 64"), "{err}");
}

#[test]
fn malformed_files_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = saved(Arch::Gat, dir.path());

    let err = load(&good, None, Device::Cpu, &WeightLimits { max_file_bytes: 100 }).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("more than the limit of 100 bytes"), "{err}");

    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("tiny", b"abc".to_vec(), "only 3 bytes"),
        ("huge-header", [(1u64 << 40).to_le_bytes().as_slice(), b"{}"].concat(), "implausible"),
        ("not-json", [4u64.to_le_bytes().as_slice(), b"[1,2"].concat(), "not a JSON object"),
        ("bad-json", [4u64.to_le_bytes().as_slice(), b"{1,2"].concat(), "not a valid safetensors file"),
        (
            "short-data",
            {
                let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
                [(header.len() as u64).to_le_bytes().as_slice(), header, &[0u8; 8]].concat()
            },
            "not a valid safetensors file",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let err = load_err(&path);
        assert!(err.contains(needle) && err.contains(name), "{name}: {err}");
    }
    let missing = dir.path().join("absent.safetensors");
    assert!(load_err(&missing).contains("absent.safetensors"));
}

#[test]
fn half_precision_files_load_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (model, good) = saved(Arch::Gin, dir.path());
    let (entries, metadata) = read_entries(&good);
    for (dtype, kind) in [(Dtype::F16, Kind::Half), (Dtype::BF16, Kind::BFloat16)] {
        let mut half = entries.clone();
        for (dt, shape, data) in half.values_mut() {
            if *dt == Dtype::F32 {
                let numel = shape.iter().product::<usize>();
                let t = Tensor::from_slice(&f32_values(data)).to_kind(kind);
                let mut bytes = vec![0u8; numel * 2];
                t.copy_data_u8(&mut bytes, numel);
                *dt = dtype;
                *data = bytes;
            }
        }
        let path = dir.path().join(format!("{dtype:?}.safetensors"));
        write_entries(&path, &half, Some(metadata.clone()));
        let loaded = GnnModel::load(&path, None, Device::Cpu).expect("half load");
        let original = model.var_store().variables();
        for (name, var) in loaded.model.var_store().variables() {
            let want = &original[&name];
            let want = if want.kind() == Kind::Float { want.to_kind(kind).to_kind(Kind::Float) } else { want.shallow_clone() };
            assert_eq!(var.kind(), want.kind(), "{dtype:?} {name}");
            assert!(var.equal(&want), "{dtype:?} {name}");
        }
    }
}
