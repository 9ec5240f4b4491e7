//! The one place the service calls the engine to check uploads. The engine's
//! `models::weights::inspect` and `data::load_dataset` are being written in parallel; until they
//! are merged, the bodies below stand in for them with the subset of checks this module needs
//! (header, spec and finite weights; the JSON graph format), and are replaced by the engine
//! calls on merge. Nothing else in the service names these engine functions.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use gcleaner_engine::data::{Dataset, FeatureSpec, Graph};
use gcleaner_engine::models::{ModelSpec, SPEC_METADATA_KEY};
use gcleaner_engine::{Error, Result};

/// Largest safetensors JSON header accepted.
const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Checks a safetensors file's header and tensors, and returns its spec (`spec_override` when
/// given, else the one embedded in its metadata). Refuses non-finite weights.
pub fn inspect_model(path: &Path, spec_override: Option<&ModelSpec>) -> Result<ModelSpec> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| Error::weights(path, "file too short for a safetensors header"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len + 8 > file_len {
        return Err(Error::weights(path, format!("header length {header_len} exceeds the file or the limit")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| Error::weights(path, format!("header is not valid JSON: {e}")))?;

    let spec = match spec_override {
        Some(spec) => spec.clone(),
        None => {
            let raw = header
                .get("__metadata__")
                .and_then(|m| m.get(SPEC_METADATA_KEY))
                .and_then(|s| s.as_str())
                .ok_or_else(|| {
                    Error::weights(path, format!("no model spec: metadata key {SPEC_METADATA_KEY:?} is missing and no spec part was given"))
                })?;
            serde_json::from_str::<ModelSpec>(raw)
                .map_err(|e| Error::weights(path, format!("embedded spec is invalid: {e}")))?
        }
    };

    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut tensors = 0usize;
    let mut covered = 0u64;
    for (name, info) in header.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let width = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" => 1,
            other => return Err(Error::weights(path, format!("tensor {name}: unsupported dtype {other:?}"))),
        };
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| Error::weights(path, format!("tensor {name}: missing or invalid shape")))?;
        let offsets: [u64; 2] = info
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| Error::weights(path, format!("tensor {name}: missing or invalid data_offsets")))?;
        let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let expected = elements.and_then(|n| n.checked_mul(width));
        if offsets[0] > offsets[1] || offsets[1] > data_len || expected != Some(offsets[1] - offsets[0]) {
            return Err(Error::weights(path, format!("tensor {name}: data_offsets {offsets:?} do not match shape {shape:?} and the file size")));
        }
        if matches!(dtype, "F32" | "F64" | "F16" | "BF16") {
            check_finite(&mut file, path, name, dtype, data_start + offsets[0], offsets[1] - offsets[0])?;
        }
        covered += offsets[1] - offsets[0];
        tensors += 1;
    }
    if tensors == 0 {
        return Err(Error::weights(path, "the file holds no tensors"));
    }
    if covered > data_len {
        return Err(Error::weights(path, "tensors overlap"));
    }
    Ok(spec)
}

fn check_finite(file: &mut std::fs::File, path: &Path, name: &str, dtype: &str, start: u64, len: u64) -> Result<()> {
    file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1 << 16];
    let mut carry: Vec<u8> = Vec::new();
    let width = match dtype {
        "F64" => 8,
        "F32" => 4,
        _ => 2,
    };
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() - carry.len() % width;
        let finite = carry[..whole].chunks_exact(width).all(|c| match dtype {
            "F64" => f64::from_le_bytes(c.try_into().unwrap_or_default()).is_finite(),
            "F32" => f32::from_le_bytes(c.try_into().unwrap_or_default()).is_finite(),
            // F16: exponent bits 10..15 all set means Inf/NaN; BF16: bits 7..15.
            "F16" => (u16::from_le_bytes([c[0], c[1]]) & 0x7c00) != 0x7c00,
            _ => (u16::from_le_bytes([c[0], c[1]]) & 0x7f80) != 0x7f80,
        });
        if !finite {
            return Err(Error::weights(path, format!("tensor {name} holds NaN or infinite values")));
        }
        carry.drain(..whole);
    }
}

/// Loads a dataset file. Stand-in: the JSON graph format only, until the engine's loader lands.
pub fn load_dataset(path: &Path) -> Result<Dataset> {
    #[derive(serde::Deserialize)]
    struct JsonGraph {
        num_nodes: usize,
        #[serde(default)]
        edges: Vec<(u32, u32)>,
        label: i64,
        node_labels: Option<Vec<u32>>,
        node_attributes: Option<Vec<Vec<f32>>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum JsonDataset {
        Object { format: Option<String>, class_labels: Option<Vec<i64>>, graphs: Vec<JsonGraph> },
        List(Vec<JsonGraph>),
    }
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let parsed: JsonDataset = serde_json::from_slice(&text)
        .map_err(|e| Error::file(path, format!("not a gcleaner.graphs/v1 JSON dataset: {e}")))?;
    let (class_labels, raw) = match parsed {
        JsonDataset::Object { format, class_labels, graphs } => {
            if let Some(f) = format.filter(|f| f != "gcleaner.graphs/v1") {
                return Err(Error::file(path, format!("unknown format {f:?}")));
            }
            (class_labels, graphs)
        }
        JsonDataset::List(graphs) => (None, graphs),
    };
    let class_labels = class_labels.unwrap_or_else(|| {
        let mut labels: Vec<i64> = raw.iter().map(|g| g.label).collect();
        labels.sort_unstable();
        labels.dedup();
        labels
    });
    let mut graphs = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let label = class_labels
            .iter()
            .position(|&l| l == g.label)
            .ok_or_else(|| Error::invalid(format!("graph {i}: label {} is not in class_labels", g.label)))?;
        if g.edges.iter().any(|&(u, v)| u as usize >= g.num_nodes || v as usize >= g.num_nodes) {
            return Err(Error::invalid(format!("graph {i}: an edge names a node outside 0..{}", g.num_nodes)));
        }
        if g.node_labels.as_ref().is_some_and(|l| l.len() != g.num_nodes) {
            return Err(Error::invalid(format!("graph {i}: node_labels has the wrong length")));
        }
        let node_attributes = match g.node_attributes {
            None => None,
            Some(rows) => {
                let dim = rows.first().map_or(0, Vec::len);
                if rows.len() != g.num_nodes || rows.iter().any(|r| r.len() != dim) {
                    return Err(Error::invalid(format!("graph {i}: node_attributes must be {} rows of equal width", g.num_nodes)));
                }
                Some(rows.into_iter().flatten().collect())
            }
        };
        let mut graph = Graph { num_nodes: g.num_nodes, edges: g.edges, node_labels: g.node_labels, node_attributes, label };
        graph.canonicalize_edges();
        graphs.push(graph);
    }
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Dataset { name, graphs, class_labels })
}

/// Width of the feature matrix a spec computes.
pub fn feature_dim(features: &FeatureSpec) -> usize {
    match features {
        FeatureSpec::OneHotDegree { max_degree } => max_degree + 1,
        FeatureSpec::NodeLabelsOneHot { num_labels } => *num_labels,
        FeatureSpec::NodeAttributes { dim } => *dim,
        FeatureSpec::Concat { parts } => parts.iter().map(feature_dim).sum(),
    }
}

/// Whether every graph provides what the spec's features need.
pub fn check_features(features: &FeatureSpec, ds: &Dataset) -> std::result::Result<(), String> {
    match features {
        FeatureSpec::OneHotDegree { .. } => Ok(()),
        FeatureSpec::NodeLabelsOneHot { .. } => match ds.graphs.iter().position(|g| g.node_labels.is_none()) {
            Some(i) => Err(format!("the model's features use node labels but graph {i} has none")),
            None => Ok(()),
        },
        FeatureSpec::NodeAttributes { dim } => {
            match ds.graphs.iter().position(|g| g.num_nodes > 0 && g.attr_dim() != *dim) {
                Some(i) => Err(format!(
                    "the model expects {dim} node attributes per node but graph {i} has {}",
                    ds.graphs[i].attr_dim()
                )),
                None => Ok(()),
            }
        }
        FeatureSpec::Concat { parts } => parts.iter().try_for_each(|p| check_features(p, ds)),
    }
}
