//! Purification settings changed from their defaults: the one way the CLI's options and `--set`
//! and a service job's config change a [`PurifyConfig`]. Each change is checked against the
//! config's fields and types when it is given; [`Overrides::apply`] lays them over the defaults
//! (the `Default` impls, or [`PurifyConfig::auxiliary`] for pseudo-labels) and ends in
//! [`PurifyConfig::validate`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PurifyConfig;
use crate::{Error, Result};

/// What a run does with the judged trigger: unlearn it (`purify`, the default) or only report
/// the verdict (`scan`: explanation, trigger recovery and the evidence, no unlearning and no
/// purified model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
    Purify,
    Scan,
}

/// Why a change does not fit the config.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideError {
    /// No setting has this path (`unlearn.no_such`).
    Unknown { path: String },
    /// The path names a group of settings (`unlearn`), which takes an object of its fields.
    NotAnObject { path: String },
    /// The value does not fit the setting's type (`message` is serde's).
    Value { path: String, message: String },
}

impl std::fmt::Display for OverrideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverrideError::Unknown { path } => write!(f, "unknown purification parameter {path:?}"),
            OverrideError::NotAnObject { path } => write!(f, "{path:?} must be an object"),
            OverrideError::Value { message, .. } => write!(f, "invalid purification parameters: {message}"),
        }
    }
}

/// Settings to change from the defaults, by their path in the report's `config`
/// (`unlearn.ce_weight`), in the order given: a later change of the same setting wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Each change as the path's segments and the setting's new value.
    changes: Vec<(Vec<String>, Value)>,
}

impl Overrides {
    pub fn new() -> Self {
        Overrides::default()
    }

    /// The changes a job config asks for: an object shaped like the report's `config`, holding
    /// only the settings to change.
    pub fn from_object(config: &Value) -> Result<Self, OverrideError> {
        let mut overrides = Overrides::new();
        overrides.set("", config.clone())?;
        Ok(overrides)
    }

    /// Sets the setting at the dotted `path` to `value`. An object sets each of its fields
    /// (`set("unlearn", {"epochs": 5})` is `set("unlearn.epochs", 5)`; the empty path is the whole
    /// config). A path no setting has, or a value of the wrong type, is refused here.
    pub fn set(&mut self, path: &str, value: Value) -> Result<(), OverrideError> {
        let segments: Vec<String> = if path.is_empty() { Vec::new() } else { path.split('.').map(str::to_string).collect() };
        let shape = serde_json::to_value(PurifyConfig::default()).expect("the config serialises");
        let mut slot = &shape;
        for (i, segment) in segments.iter().enumerate() {
            slot = slot
                .as_object()
                .and_then(|fields| fields.get(segment))
                .ok_or_else(|| OverrideError::Unknown { path: segments[..=i].join(".") })?;
        }
        self.set_at(&shape, slot, segments, value)
    }

    fn set_at(&mut self, shape: &Value, slot: &Value, segments: Vec<String>, value: Value) -> Result<(), OverrideError> {
        let path = segments.join(".");
        match (slot.as_object(), value) {
            // A group of settings: each field of the object in turn.
            (Some(fields), Value::Object(patch)) => {
                for (key, value) in patch {
                    let mut at = segments.clone();
                    at.push(key.clone());
                    let field = fields.get(&key).ok_or_else(|| OverrideError::Unknown { path: at.join(".") })?;
                    self.set_at(shape, field, at, value)?;
                }
                Ok(())
            }
            (Some(_), _) => Err(OverrideError::NotAnObject { path }),
            (None, value) => {
                // The type is the config's: the value must deserialise in its place.
                let mut probe = shape.clone();
                *pointer_mut(&mut probe, &segments) = value.clone();
                serde_json::from_value::<PurifyConfig>(probe)
                    .map_err(|e| OverrideError::Value { path, message: e.to_string() })?;
                self.changes.push((segments, value));
                Ok(())
            }
        }
    }

    /// Whether the changes ask for pseudo-labels (`pseudo_labels: true`, the last one given).
    pub fn pseudo_labels(&self) -> bool {
        self.changes
            .iter()
            .rev()
            .find(|(path, _)| path.len() == 1 && path[0] == "pseudo_labels")
            .and_then(|(_, value)| value.as_bool())
            .unwrap_or(false)
    }

    /// The defaults ([`PurifyConfig::defaults_for`] `pseudo_labels`) with every change laid over
    /// them, checked by [`PurifyConfig::validate`].
    pub fn apply(&self, pseudo_labels: bool) -> Result<PurifyConfig> {
        let mut config = serde_json::to_value(PurifyConfig::defaults_for(pseudo_labels)).expect("the config serialises");
        for (path, value) in &self.changes {
            *pointer_mut(&mut config, path) = value.clone();
        }
        let config: PurifyConfig =
            serde_json::from_value(config).map_err(|e| Error::invalid(format!("invalid purification parameters: {e}")))?;
        config.validate()?;
        Ok(config)
    }
}

/// The slot at `path` of a config's JSON form (every path here was checked against it).
fn pointer_mut<'a>(config: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(config, |slot, segment| &mut slot[segment.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purify::unlearn::UnlearnConfig;
    use serde_json::json;

    #[test]
    fn changes_are_laid_over_the_defaults_and_unknown_ones_refused() {
        let mut o = Overrides::from_object(&json!({ "seed": 3, "unlearn": { "epochs": 7 } })).unwrap();
        o.set("recovery.sizes", json!([3, 4])).unwrap();
        o.set("seed", json!(4)).unwrap();
        let c = o.apply(false).unwrap();
        assert_eq!((c.seed, c.unlearn.epochs, c.recovery.sizes.clone()), (4, 7, vec![3, 4]));
        assert_eq!(c.recovery.restarts, PurifyConfig::default().recovery.restarts);
        let unknown = |path: &str| OverrideError::Unknown { path: path.into() };
        assert_eq!(Overrides::from_object(&json!({ "sead": 3 })).unwrap_err(), unknown("sead"));
        assert_eq!(Overrides::new().set("unlearn.anchor_weight", json!(1)).unwrap_err(), unknown("unlearn.anchor_weight"));
        assert_eq!(Overrides::from_object(&json!({ "unlearn": { "epoch": 3 } })).unwrap_err(), unknown("unlearn.epoch"));
        assert_eq!(
            Overrides::from_object(&json!({ "unlearn": 5 })).unwrap_err(),
            OverrideError::NotAnObject { path: "unlearn".into() }
        );
        let err = Overrides::new().set("unlearn.epochs", json!("many")).unwrap_err();
        assert!(matches!(&err, OverrideError::Value { path, .. } if path == "unlearn.epochs"), "{err:?}");
        assert_eq!(err.to_string(), "invalid purification parameters: invalid type: string \"many\", expected usize");
        // In range is `validate`'s to say, when the changes are applied.
        let o = Overrides::from_object(&json!({ "unlearn": { "lr": -1.0 } })).unwrap();
        assert!(matches!(o.apply(false).unwrap_err(), Error::Setting { path, .. } if path == "unlearn.lr"));
    }

    #[test]
    fn pseudo_labels_start_from_the_auxiliary_defaults() {
        let o = Overrides::from_object(&json!({ "pseudo_labels": true, "unlearn": { "epochs": 30 } })).unwrap();
        assert!(o.pseudo_labels());
        let c = o.apply(true).unwrap();
        assert!(c.pseudo_labels);
        assert_eq!((c.unlearn.epochs, c.unlearn.train_last_conv), (30, false));
        assert_eq!(Overrides::new().apply(true).unwrap().unlearn, UnlearnConfig::auxiliary());
        assert_eq!(Overrides::new().apply(false).unwrap(), PurifyConfig::default());
        assert!(!Overrides::new().pseudo_labels());
    }

    #[test]
    fn a_stored_config_takes_defaults_for_missing_fields_and_ignores_removed_ones() {
        let stored = json!({ "seed": 3, "unlearn": { "epochs": 5, "anchor_weight": 1000.0, "recalibrate_bias": "mean" } });
        let c: PurifyConfig = serde_json::from_value(stored).unwrap();
        assert_eq!((c.seed, c.unlearn.epochs), (3, 5));
        assert_eq!(c.unlearn.mixup_weight, UnlearnConfig::default().mixup_weight);
        assert_eq!(c.recovery, PurifyConfig::default().recovery);
    }

    /// Every leaf of a config's JSON form, by dotted path.
    fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        match value.as_object() {
            Some(fields) => {
                for (key, field) in fields {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    leaves(field, &path, out);
                }
            }
            None => out.push((prefix.to_string(), value.clone())),
        }
    }

    /// docs/report.md's settings table, row by row: the path and the default column (its text
    /// before any parenthesis, as JSON where it parses, else as a string).
    fn documented_settings() -> Vec<(String, Value)> {
        let doc = include_str!("../../../docs/report.md");
        let table = doc.split("\n## config\n").nth(1).expect("docs/report.md has a config section");
        table
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let path = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let default = cells.get(2)?.split(" (").next().unwrap_or_default().trim();
                let value = serde_json::from_str(default).unwrap_or_else(|_| Value::String(default.to_string()));
                Some((path.to_string(), value))
            })
            .collect()
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (a.as_array(), b.as_array()) {
                (Some(x), Some(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
                _ => a == b,
            },
        }
    }

    #[test]
    fn the_documented_settings_are_the_config_with_its_defaults() {
        let mut config = Vec::new();
        leaves(&serde_json::to_value(PurifyConfig::default()).unwrap(), "", &mut config);
        let documented = documented_settings();
        for (path, default) in &config {
            match documented.iter().find(|(p, _)| p == path) {
                Some((_, doc)) => {
                    assert!(same(doc, default), "docs/report.md gives {path} the default {doc}, the code {default}")
                }
                None => panic!("docs/report.md's config table lacks {path} (default {default})"),
            }
        }
        for (path, _) in &documented {
            assert!(config.iter().any(|(p, _)| p == path), "docs/report.md documents {path}, which the config does not have");
        }
    }
}
