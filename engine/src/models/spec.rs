//! The model spec: everything needed to rebuild a model around its weights, stored as JSON in
//! the safetensors metadata under [`SPEC_METADATA_KEY`] (or passed as a separate file).
//!
//! Two formats: `gcleaner.model/v1` describes the four published G-Cleaner classifiers,
//! `gcleaner.model/v2` a model built from PyTorch Geometric's own classes (see
//! [`super::pyg_spec`]). Both parse into [`ModelSpec`]; the format is chosen by the `format`
//! field and written back the same way.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pyg_spec::{self, PygOptions, V2Document, SPEC_FORMAT_V2};
use crate::data::FeatureSpec;
use crate::{Error, Result};

pub const SPEC_FORMAT: &str = "gcleaner.model/v1";
pub const SPEC_METADATA_KEY: &str = "gcleaner.spec";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gin,
    Gcn,
    Gat,
    Sage,
}

impl Arch {
    /// The published G-Cleaner layer count for this architecture.
    pub fn default_layers(self) -> usize {
        match self {
            Arch::Gin => 5,
            Arch::Gcn | Arch::Gat => 3,
            Arch::Sage => 7,
        }
    }

    /// The published pooling for this architecture.
    pub fn default_pooling(self) -> Pooling {
        match self {
            Arch::Sage => Pooling::Mean,
            _ => Pooling::Sum,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gin => "gin",
            Arch::Gcn => "gcn",
            Arch::Gat => "gat",
            Arch::Sage => "sage",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "gin" => Ok(Arch::Gin),
            "gcn" => Ok(Arch::Gcn),
            "gat" => Ok(Arch::Gat),
            "sage" | "graphsage" => Ok(Arch::Sage),
            other => Err(format!("unknown architecture {other:?} (expected gin, gcn, gat or sage)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Sum,
    Mean,
    /// Element-wise maximum over each graph's nodes (v2 specs only).
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub format: String,
    pub arch: Arch,
    pub in_features: usize,
    pub hidden: usize,
    pub num_classes: usize,
    pub num_layers: usize,
    pub pooling: Pooling,
    pub features: FeatureSpec,
    /// The dataset's original graph labels, in class-index order (MUTAG: [-1, 1]), so data given
    /// later is mapped to the classes the model was trained on. Absent: labels are 0..C-1.
    pub class_labels: Option<Vec<i64>>,
    /// Set for a model built from PyTorch Geometric's classes (a v2 spec): the `BasicGNN`
    /// options and the head. `None` for the published G-Cleaner layout (a v1 spec).
    pub pyg: Option<PygOptions>,
}

/// A v1 spec as written in JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1Document {
    format: String,
    arch: Arch,
    in_features: usize,
    hidden: usize,
    num_classes: usize,
    num_layers: usize,
    pooling: Pooling,
    features: FeatureSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class_labels: Option<Vec<i64>>,
}

impl Serialize for ModelSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.pyg {
            Some(pyg) => V2Document::of(self, pyg).serialize(serializer),
            None => V1Document {
                format: self.format.clone(),
                arch: self.arch,
                in_features: self.in_features,
                hidden: self.hidden,
                num_classes: self.num_classes,
                num_layers: self.num_layers,
                pooling: self.pooling,
                features: self.features.clone(),
                class_labels: self.class_labels.clone(),
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ModelSpec {
    /// The `format` field picks the document shape; anything but v2 is read as v1, whose
    /// validation then names the format it expected.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.get("format").and_then(|f| f.as_str()) == Some(SPEC_FORMAT_V2) {
            let doc: V2Document = serde_json::from_value(value).map_err(D::Error::custom)?;
            return doc.into_spec().map_err(D::Error::custom);
        }
        let doc: V1Document = serde_json::from_value(value).map_err(D::Error::custom)?;
        Ok(ModelSpec {
            format: doc.format,
            arch: doc.arch,
            in_features: doc.in_features,
            hidden: doc.hidden,
            num_classes: doc.num_classes,
            num_layers: doc.num_layers,
            pooling: doc.pooling,
            features: doc.features,
            class_labels: doc.class_labels,
            pyg: None,
        })
    }
}

/// Largest accepted hidden width: far above the published 64, low enough that a hostile spec
/// cannot make the engine allocate gigabytes before any tensor is read.
pub const MAX_HIDDEN: usize = 4096;
pub const MAX_LAYERS: usize = 64;
pub const MAX_IN_FEATURES: usize = 65_536;
pub const MAX_CLASSES: usize = 4096;
/// Most values (weights and buffers) a v2 model may have: 1 GiB of f32. The v2 options (jumping
/// knowledge concatenation, head widths) multiply widths, so the ranges alone do not bound it.
pub const MAX_PARAMETERS: usize = 1 << 28;

impl ModelSpec {
    /// A spec with the published layer count and pooling of `arch`.
    pub fn published(arch: Arch, in_features: usize, hidden: usize, num_classes: usize, features: FeatureSpec) -> ModelSpec {
        ModelSpec {
            format: SPEC_FORMAT.to_string(),
            arch,
            in_features,
            hidden,
            num_classes,
            num_layers: arch.default_layers(),
            pooling: arch.default_pooling(),
            features,
            class_labels: None,
            pyg: None,
        }
    }

    /// Parses and validates a spec from its JSON text.
    pub fn from_json(text: &str) -> Result<ModelSpec> {
        let spec: ModelSpec = serde_json::from_str(text).map_err(|e| Error::invalid(format!("invalid model spec JSON: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ModelSpec always serialises")
    }

    /// Checks every field at once and reports all problems in one error.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let format = if self.pyg.is_some() { SPEC_FORMAT_V2 } else { SPEC_FORMAT };
        if self.format != format {
            problems.push(format!("format must be {format:?}, got {:?}", self.format));
        }
        if self.pyg.is_none() && self.pooling == Pooling::Max {
            problems.push(format!("pooling \"max\" needs a {SPEC_FORMAT_V2:?} spec"));
        }
        let mut check_range = |field: &str, value: usize, lo: usize, hi: usize| {
            if value < lo || value > hi {
                problems.push(format!("{field} must be between {lo} and {hi}, got {value}"));
            }
        };
        check_range("in_features", self.in_features, 1, MAX_IN_FEATURES);
        check_range("hidden", self.hidden, 1, MAX_HIDDEN);
        check_range("num_layers", self.num_layers, 1, MAX_LAYERS);
        check_range("num_classes", self.num_classes, 2, MAX_CLASSES);
        if let Err(e) = self.features.validate() {
            problems.push(format!("features: {e}"));
        }
        let width = self.features.dim();
        if width != self.in_features {
            problems.push(format!(
                "in_features is {} but the features ({}) give {width} columns",
                self.in_features,
                serde_json::to_string(&self.features).unwrap_or_default()
            ));
        }
        if let Some(labels) = &self.class_labels {
            if labels.len() != self.num_classes {
                problems.push(format!("class_labels has {} entries but num_classes is {}", labels.len(), self.num_classes));
            }
            let mut sorted = labels.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != labels.len() {
                problems.push("class_labels contains duplicates".to_string());
            }
        }
        if let Some(pyg) = &self.pyg {
            problems.extend(pyg_spec::problems(self, pyg, MAX_HIDDEN, MAX_LAYERS));
            if problems.is_empty() {
                let parameters: usize =
                    super::weights::expected_tensors(self).iter().map(|t| t.shape.iter().product::<usize>()).sum();
                if parameters > MAX_PARAMETERS {
                    problems.push(format!("the model would have {parameters} values, more than {MAX_PARAMETERS}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!("invalid model spec: {}", problems.join("; "))))
        }
    }

    /// The format the spec is written in: v2 for a PyG model, else v1.
    pub fn is_pyg(&self) -> bool {
        self.pyg.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gin() -> ModelSpec {
        ModelSpec::published(Arch::Gin, 11, 64, 2, FeatureSpec::OneHotDegree { max_degree: 10 })
    }

    #[test]
    fn published_specs_are_valid_and_round_trip_through_json() {
        let spec = gin();
        assert_eq!((spec.num_layers, spec.pooling), (5, Pooling::Sum));
        let back = ModelSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(back, spec);
        let sage = ModelSpec::published(Arch::Sage, 3, 64, 2, FeatureSpec::NodeAttributes { dim: 3 });
        assert_eq!((sage.num_layers, sage.pooling), (7, Pooling::Mean));
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut spec = gin();
        spec.format = "other".into();
        spec.hidden = MAX_HIDDEN + 1;
        spec.num_layers = 65;
        spec.num_classes = 1;
        spec.in_features = 12;
        spec.class_labels = Some(vec![1, 1, 2]);
        let err = spec.validate().unwrap_err().to_string();
        for needle in ["format", "hidden", "num_layers", "num_classes", "in_features is 12", "class_labels has 3", "duplicates"] {
            assert!(err.contains(needle), "{needle:?} missing from {err}");
        }
    }

    #[test]
    fn in_features_must_match_the_feature_width() {
        let mut spec = gin();
        spec.features = FeatureSpec::Concat {
            parts: vec![FeatureSpec::OneHotDegree { max_degree: 4 }, FeatureSpec::NodeLabelsOneHot { num_labels: 6 }],
        };
        assert!(spec.validate().is_ok());
        spec.features = FeatureSpec::OneHotDegree { max_degree: usize::MAX };
        assert!(spec.validate().unwrap_err().to_string().contains("in_features"));
        spec.features = FeatureSpec::Concat { parts: vec![] };
        spec.in_features = 0;
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("features: concat needs at least one part"), "{err}");
    }

    #[test]
    fn from_json_rejects_unknown_fields_and_bad_json() {
        let mut value: serde_json::Value = serde_json::from_str(&gin().to_json()).unwrap();
        value["dropout"] = serde_json::json!(0.5);
        assert!(ModelSpec::from_json(&value.to_string()).unwrap_err().to_string().contains("dropout"));
        assert!(ModelSpec::from_json("{").is_err());
    }
}
