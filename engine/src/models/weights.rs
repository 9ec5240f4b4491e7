//! Model weights as safetensors: PyTorch Geometric state_dict names, the spec JSON in the
//! metadata under [`SPEC_METADATA_KEY`]. Pickle checkpoints are refused, never opened.
//!
//! Reading is defensive because files come from users: the size is bounded before reading, the
//! header length is checked before parsing, the spec is validated before any shape is derived
//! from it, and every tensor is checked (presence, dtype, shape, finiteness) with all problems
//! reported in one error.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor};

use super::{basic_gnn::BasicGnn, head::Head, GnnModel, ModelSpec, PygHead, SPEC_METADATA_KEY};
use crate::{Error, Result};

pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// Headers of real model files are a few kilobytes; anything this large is not one.
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Bounds applied before a weights file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightLimits {
    pub max_file_bytes: u64,
}

impl Default for WeightLimits {
    fn default() -> Self {
        WeightLimits { max_file_bytes: DEFAULT_MAX_FILE_BYTES }
    }
}

/// What a tensor holds, which decides the dtypes and values it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// A float parameter or buffer (f32, f16 or bf16 on disk; f32 in memory).
    Float,
    /// BatchNorm's running variance: a float buffer that must also be non-negative.
    RunningVariance,
    /// BatchNorm's `num_batches_tracked`, an i64 scalar.
    Counter,
}

/// One tensor a spec requires, with its PyG name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: TensorRole,
}

impl ExpectedTensor {
    pub fn param(name: &str, shape: &[usize]) -> ExpectedTensor {
        ExpectedTensor { name: name.to_string(), shape: shape.to_vec(), role: TensorRole::Float }
    }

    pub fn running_var(name: &str, shape: &[usize]) -> ExpectedTensor {
        ExpectedTensor { name: name.to_string(), shape: shape.to_vec(), role: TensorRole::RunningVariance }
    }

    pub fn counter(name: &str) -> ExpectedTensor {
        ExpectedTensor { name: name.to_string(), shape: Vec::new(), role: TensorRole::Counter }
    }
}

/// Every tensor a model built from `spec` has, in layer order.
pub fn expected_tensors(spec: &ModelSpec) -> Vec<ExpectedTensor> {
    if let Some(pyg) = &spec.pyg {
        let mut tensors = BasicGnn::expected_tensors(spec, pyg);
        match &pyg.head {
            PygHead::Mlp(mlp) => tensors.extend(mlp.layout().expected_tensors("head")),
            PygHead::Linear { bias } => {
                tensors.push(ExpectedTensor::param("head.weight", &[spec.num_classes, pyg.gnn_out(spec.hidden)]));
                if *bias {
                    tensors.push(ExpectedTensor::param("head.bias", &[spec.num_classes]));
                }
            }
        }
        return tensors;
    }
    let mut tensors = super::published::expected_tensors(spec);
    tensors.extend(Head::expected_tensors(spec.hidden, spec.num_classes));
    tensors
}

/// A model read from disk, with the file's tensors that the spec does not use (the published
/// GCN checkpoint carries unused conv4/conv5 and bn1-bn5; a v2 file may have none).
#[derive(Debug)]
pub struct LoadedModel {
    pub model: GnnModel,
    pub ignored_tensors: Vec<String>,
}

/// Loads weights into a new model on `device`.
pub fn load(path: &Path, spec_override: Option<ModelSpec>, device: Device, limits: &WeightLimits) -> Result<LoadedModel> {
    let bytes = read_weights_file(path, limits)?;
    let checked = check_weights(path, &bytes, spec_override)?;
    let model = GnnModel::new(checked.spec, device).map_err(|e| Error::weights(path, e.to_string()))?;
    let mut variables = model.var_store().variables();
    for (name, value) in checked.tensors {
        let mut var = variables.remove(&name).ok_or_else(|| Error::invalid(format!("internal: model has no variable {name}")))?;
        tch::no_grad(|| var.f_copy_(&value))?;
    }
    if let Some(name) = variables.keys().next() {
        return Err(Error::invalid(format!("internal: variable {name} was not loaded")));
    }
    Ok(LoadedModel { model, ignored_tensors: checked.ignored })
}

/// Validates a weights file against its embedded spec without building a model, with the
/// default limits. Returns the spec.
pub fn inspect(path: &Path) -> Result<ModelSpec> {
    inspect_with_limits(path, &WeightLimits::default())
}

pub fn inspect_with_limits(path: &Path, limits: &WeightLimits) -> Result<ModelSpec> {
    let bytes = read_weights_file(path, limits)?;
    Ok(check_weights(path, &bytes, None)?.spec)
}

/// Writes `model` as safetensors: every variable by its PyG name, floats as f32, BatchNorm
/// counters as i64, the spec JSON in the metadata. Written to a temporary file beside `path`
/// and renamed, so a reader never sees half a file.
pub fn save(model: &GnnModel, path: &Path) -> Result<()> {
    let mut variables: Vec<(String, Tensor)> = model.var_store().variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(variables.len());
    for (name, var) in variables {
        let cpu = var.detach().to_device(Device::Cpu).contiguous();
        let shape: Vec<usize> = cpu.size().iter().map(|&d| d as usize).collect();
        let (dtype, data) = if cpu.kind() == Kind::Int64 {
            let values = Vec::<i64>::try_from(cpu.flatten(0, -1))?;
            (Dtype::I64, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        } else {
            let values = Vec::<f32>::try_from(cpu.to_kind(Kind::Float).flatten(0, -1))?;
            (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        encoded.push((name, dtype, shape, data));
    }
    let mut views = Vec::with_capacity(encoded.len());
    for (name, dtype, shape, data) in &encoded {
        let view = TensorView::new(*dtype, shape.clone(), data)
            .map_err(|e| Error::weights(path, format!("cannot encode {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = Some(HashMap::from([(SPEC_METADATA_KEY.to_string(), model.spec().to_json())]));
    let temporary = temporary_path(path);
    let written = safetensors::serialize_to_file(views, &metadata, &temporary)
        .map_err(|e| Error::weights(path, format!("cannot write: {e}")))
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

const PICKLE_EXTENSIONS: [&str; 4] = ["pt", "pth", "bin", "ckpt"];

fn pickle_refusal(path: &Path, why: &str) -> Error {
    Error::weights(
        path,
        format!(
            "{why}; PyTorch pickle checkpoints are refused because unpickling can run arbitrary code. \
             Convert it to safetensors in Python: `import json; from safetensors.torch import save_file; \
             save_file(model.state_dict(), \"model.safetensors\", metadata={{\"{SPEC_METADATA_KEY}\": json.dumps(spec)}})` \
             (see docs/model-format.md for the spec)"
        ),
    )
}

/// Reads the file after the name, size and first bytes say it may be a safetensors file.
fn read_weights_file(path: &Path, limits: &WeightLimits) -> Result<Vec<u8>> {
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        if PICKLE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            return Err(pickle_refusal(path, &format!("a .{ext} file is a pickle checkpoint")));
        }
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(Error::weights(path, "not a regular file"));
    }
    if metadata.len() > limits.max_file_bytes {
        return Err(Error::weights(
            path,
            format!("file is {} bytes, more than the limit of {} bytes", metadata.len(), limits.max_file_bytes),
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // `take` bounds the read even if the file grows after the size check.
    file.take(limits.max_file_bytes + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(Error::weights(path, format!("file is larger than the limit of {} bytes", limits.max_file_bytes)));
    }
    // A safetensors file opens with its header length (u64 LE) and then '{'. Its first bytes
    // can look like a pickle or zip signature (a header of 128 bytes starts with 0x80), so the
    // signatures are only consulted for files that are not plausibly safetensors.
    let header_len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let available = (bytes.len() as u64).saturating_sub(8);
    let plausible =
        matches!(header_len, Some(n) if (2..=available.min(MAX_HEADER_BYTES)).contains(&n)) && bytes.get(8) == Some(&b'{');
    if plausible {
        return Ok(bytes);
    }
    if bytes.starts_with(b"PK") {
        return Err(pickle_refusal(path, "the file is a zip archive (the torch.save format)"));
    }
    if bytes.first() == Some(&0x80) {
        return Err(pickle_refusal(path, "the file starts with a pickle protocol marker"));
    }
    Err(Error::weights(
        path,
        match header_len {
            None => format!("not a safetensors file: only {} bytes", bytes.len()),
            Some(n) if n > MAX_HEADER_BYTES || n > available => format!(
                "not a safetensors file: header length {n} is implausible for a {}-byte file (limit {MAX_HEADER_BYTES})",
                bytes.len()
            ),
            Some(_) => "not a safetensors file: the header is not a JSON object".to_string(),
        },
    ))
}

struct CheckedWeights {
    spec: ModelSpec,
    /// f32 or i64 CPU tensors, by name, in the order of [`expected_tensors`].
    tensors: Vec<(String, Tensor)>,
    ignored: Vec<String>,
}

/// The first name that the safetensors header's JSON object gives twice, at the top level (a
/// tensor) or in `__metadata__`. JSON parsers keep one of the two silently (serde_json and the
/// safetensors crate the last, other readers the first), so such a file means different
/// weights to different readers and is refused. A header that is not a JSON object gives
/// `Ok(None)`: the safetensors parser reports it.
pub fn duplicate_header_key(header: &[u8]) -> Option<String> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    /// Visits an object's keys; `metadata` also looks inside `__metadata__`.
    struct Keys {
        metadata: bool,
    }

    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut duplicate = None;
            while let Some(key) = map.next_key::<String>()? {
                if self.metadata && key == "__metadata__" {
                    let inner = map.next_value_seed(KeysSeed)?;
                    duplicate = duplicate.or(inner.map(|k| format!("__metadata__.{k}")));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                if !seen.insert(key.clone()) {
                    duplicate = duplicate.or(Some(key));
                }
            }
            Ok(duplicate)
        }

        // `__metadata__` may be null; anything else that is not an object is left to the
        // safetensors parser.
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
    }

    struct KeysSeed;

    impl<'de> serde::de::DeserializeSeed<'de> for KeysSeed {
        type Value = Option<String>;

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_any(Keys { metadata: false }).or(Ok(None))
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(header);
    deserializer.deserialize_map(Keys { metadata: true }).ok().flatten()
}

fn check_weights(path: &Path, bytes: &[u8], spec_override: Option<ModelSpec>) -> Result<CheckedWeights> {
    let header = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?));
    if let Some(name) = header.and_then(duplicate_header_key) {
        return Err(Error::weights(path, format!("not a valid safetensors file: the header names {name:?} more than once")));
    }
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::weights(path, format!("not a valid safetensors file: {e}")))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::weights(path, format!("not a valid safetensors file: {e}")))?;
    let spec = match spec_override {
        Some(spec) => spec,
        None => {
            let text = metadata.metadata().as_ref().and_then(|m| m.get(SPEC_METADATA_KEY)).ok_or_else(|| {
                Error::weights(
                    path,
                    format!("no model spec: the file has no {SPEC_METADATA_KEY:?} metadata entry; pass the spec JSON separately"),
                )
            })?;
            ModelSpec::from_json(text).map_err(|e| Error::weights(path, format!("embedded spec: {e}")))?
        }
    };
    spec.validate().map_err(|e| Error::weights(path, e.to_string()))?;

    let expected = expected_tensors(&spec);
    let wanted: BTreeSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    let mut unused: Vec<&String> = file.names().into_iter().filter(|name| !wanted.contains(name.as_str())).collect();
    unused.sort_by(|a, b| module_order(a, b));
    // A PyG state_dict with a tensor the spec does not explain holds a module gcleaner would
    // not run: refused, never ignored, so it cannot be silently mis-run.
    if let (Some(first), true) = (unused.first(), spec.is_pyg()) {
        return Err(Error::weights(path, unmapped_module(first, &spec, unused.len())));
    }
    let mut problems = Vec::new();
    let mut tensors = Vec::with_capacity(expected.len());
    for want in &expected {
        let view = match file.tensor(&want.name) {
            Ok(view) => view,
            Err(_) => {
                problems.push(format!("{}: missing", want.name));
                continue;
            }
        };
        match check_tensor(want, &view) {
            Ok(tensor) => tensors.push((want.name.clone(), tensor)),
            Err(problem) => problems.push(format!("{}: {problem}", want.name)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::weights(
            path,
            format!(
                "weights do not match the {} spec ({} problem(s)): {}",
                spec.arch.name(),
                problems.len(),
                problems.join("; ")
            ),
        ));
    }
    let ignored: BTreeSet<String> = unused.into_iter().cloned().collect();
    Ok(CheckedWeights { spec, tensors, ignored: ignored.into_iter().collect() })
}

/// Orders tensor names as PyTorch lists them: by module path, numbered children numerically
/// (`convs.2` before `convs.10`).
fn module_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |name: &str| -> Vec<(u64, String)> {
        name.split('.').map(|part| part.parse::<u64>().map_or((u64::MAX, part.to_string()), |n| (n, String::new()))).collect()
    };
    key(a).cmp(&key(b))
}

/// The refusal for a v2 file's tensor `name` that the spec does not explain: the module it
/// belongs to, what that module most likely is, and where the accepted layout is written down.
fn unmapped_module(name: &str, spec: &ModelSpec, count: usize) -> String {
    let module = name.rsplit_once('.').map_or(name, |(module, _)| module);
    let parts: Vec<&str> = module.split('.').collect();
    let has = |part: &str| parts.contains(&part);
    let class = serde_json::to_value(spec).ok().and_then(|v| v["gnn"]["class"].as_str().map(str::to_string)).unwrap_or_default();
    let why = if has("lin_edge") || has("att_edge") || name.ends_with(".att_edge") {
        "edge features (edge_dim) are not supported".to_string()
    } else if has("res") {
        "residual connections in GATConv are not supported".to_string()
    } else if has("lin_src") || has("lin_dst") {
        "bipartite GATConv (separate source and target weights) is not supported".to_string()
    } else if parts.first() == Some(&"gnn") && has("jk") {
        "jumping knowledge \"lstm\" is not supported".to_string()
    } else if parts.first() == Some(&"head") {
        "the head is not the MLP or Linear the spec describes".to_string()
    } else if parts.first() == Some(&"gnn") {
        format!("it is not part of the {class} the spec describes (another conv type, norm or option?)")
    } else {
        "a v2 model has only the modules gnn (a PyG BasicGNN) and head".to_string()
    };
    format!(
        "cannot map module {module:?} (tensor {name:?}{}): {why}; see docs/model-format.md for the PyG models gcleaner runs",
        if count > 1 { format!(", and {} more unmapped tensor(s)", count - 1) } else { String::new() }
    )
}

/// One tensor against its expectation: dtype, shape, then values. Returns it as an f32 (or
/// i64 counter) CPU tensor.
fn check_tensor(want: &ExpectedTensor, view: &TensorView<'_>) -> std::result::Result<Tensor, String> {
    let kind = match (want.role, view.dtype()) {
        (TensorRole::Counter, Dtype::I64) => Kind::Int64,
        (TensorRole::Counter, other) => return Err(format!("dtype {other:?}, expected I64")),
        (_, Dtype::F32) => Kind::Float,
        (_, Dtype::F16) => Kind::Half,
        (_, Dtype::BF16) => Kind::BFloat16,
        (_, other) => return Err(format!("dtype {other:?}, expected F32, F16 or BF16")),
    };
    if view.shape() != want.shape.as_slice() {
        return Err(format!("shape {:?}, the spec expects {:?}", view.shape(), want.shape));
    }
    let dims: Vec<i64> = want.shape.iter().map(|&d| d as i64).collect();
    // libtorch copies `numel * element size` bytes without bounds checks: make sure they exist.
    let numel: usize = want.shape.iter().product();
    if view.data().len() != numel * kind.elt_size_in_bytes() {
        return Err(format!("holds {} bytes, expected {}", view.data().len(), numel * kind.elt_size_in_bytes()));
    }
    let raw = Tensor::f_from_data_size(view.data(), &dims, kind).map_err(|e| e.to_string())?;
    if want.role == TensorRole::Counter {
        return Ok(raw);
    }
    let values = raw.to_kind(Kind::Float);
    if values.isfinite().all().int64_value(&[]) == 0 {
        return Err("contains NaN or Inf".to_string());
    }
    if want.role == TensorRole::RunningVariance && values.lt(0.0).any().int64_value(&[]) != 0 {
        return Err("has negative entries (a variance cannot be negative)".to_string());
    }
    Ok(values)
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use crate::models::test_support::spec;

    #[test]
    fn duplicate_names_in_the_header_are_found() {
        let dup = |text: &str| duplicate_header_key(text.as_bytes());
        let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
        assert_eq!(dup(&format!(r#"{{"w":{entry},"b":{entry}}}"#)), None);
        assert_eq!(dup(&format!(r#"{{"w":{entry},"b":{entry},"w":{entry}}}"#)), Some("w".into()));
        assert_eq!(
            dup(&format!(r#"{{"__metadata__":{{"a":"1"}},"w":{entry},"__metadata__":{{}}}}"#)),
            Some("__metadata__".into())
        );
        assert_eq!(dup(r#"{"__metadata__":{"spec":"1","x":"2","spec":"3"}}"#), Some("__metadata__.spec".into()));
        assert_eq!(dup(r#"{"__metadata__":null,"w":{"w":1,"w":2}}"#), None, "only names of tensors and metadata entries");
        // Malformed headers are the safetensors parser's to report.
        assert_eq!(dup("[1,2]"), None);
        assert_eq!(dup(r#"{"w":1,"w""#), None);
        assert_eq!(dup(r#"{"__metadata__":"x"}"#), None);
    }

    /// A saved model's file with `header` edited, the length prefix recomputed.
    fn with_header(bytes: &[u8], edit: impl FnOnce(&str) -> String) -> Vec<u8> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = edit(std::str::from_utf8(&bytes[8..8 + n]).unwrap());
        [(header.len() as u64).to_le_bytes().as_slice(), header.as_bytes(), &bytes[8 + n..]].concat()
    }

    #[test]
    fn a_file_naming_a_tensor_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _torch_seed = crate::rng::seed_torch(5);
        let model = GnnModel::new(spec(crate::models::Arch::Gin, 5, 8, 3), Device::Cpu).unwrap();
        let good = dir.path().join("good.safetensors");
        model.save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let parsed: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let entry = parsed["fc2.bias"].to_string();

        // The same tensor twice, both entries alike: the safetensors crate alone accepts it.
        let twice = with_header(&bytes, |h| format!("{{\"fc2.bias\":{entry},{}", &h[1..]));
        assert!(SafeTensors::deserialize(&twice).is_ok(), "the crafted file is otherwise valid");
        let path = dir.path().join("twice.safetensors");
        std::fs::write(&path, &twice).unwrap();
        for err in [
            inspect(&path).map(|_| ()).unwrap_err().to_string(),
            load(&path, None, Device::Cpu, &WeightLimits::default()).map(|_| ()).unwrap_err().to_string(),
        ] {
            assert!(err.contains("\"fc2.bias\" more than once") && err.contains("twice.safetensors"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }

        // The spec given twice: readers would disagree on the architecture.
        let spec_twice = with_header(&bytes, |h| {
            let spec = &parsed["__metadata__"][SPEC_METADATA_KEY];
            h.replacen("\"__metadata__\":{", &format!("\"__metadata__\":{{\"{SPEC_METADATA_KEY}\":{spec},"), 1)
        });
        let path = dir.path().join("spec-twice.safetensors");
        std::fs::write(&path, &spec_twice).unwrap();
        let err = inspect(&path).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(&format!("__metadata__.{SPEC_METADATA_KEY}")), "{err}");

        // The untouched file still loads.
        inspect(&good).unwrap();
    }
}
