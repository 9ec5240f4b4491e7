//! Parsing of the `--features` flag into a [`FeatureSpec`], with bucket counts taken from the
//! dataset when the flag leaves them out.

use anyhow::{bail, Result};
use gcleaner_engine::data::{Dataset, FeatureSpec};

/// `degree[:MAX]`, `labels[:N]`, `attributes`, or several joined by `+`.
pub fn parse_features(text: &str, ds: &Dataset) -> Result<FeatureSpec> {
    let mut parts = Vec::new();
    for part in text.split('+').map(str::trim) {
        let (name, arg) = match part.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (part, None),
        };
        let number = |what: &str| -> Result<Option<usize>> {
            match arg {
                None => Ok(None),
                Some(a) => match a.parse::<usize>() {
                    Ok(v) if v > 0 => Ok(Some(v)),
                    _ => bail!("--features: {what} needs a positive integer, got {a:?}"),
                },
            }
        };
        parts.push(match name {
            "degree" => {
                let max_degree = match number("degree")? {
                    Some(v) => v,
                    None => match FeatureSpec::default_for(ds) {
                        FeatureSpec::OneHotDegree { max_degree } => max_degree,
                        _ => ds.max_degree().max(1),
                    },
                };
                FeatureSpec::OneHotDegree { max_degree }
            }
            "labels" => {
                let num_labels = number("labels")?.unwrap_or(ds.num_node_labels());
                if num_labels == 0 {
                    bail!("--features labels: the dataset has no node labels");
                }
                FeatureSpec::NodeLabelsOneHot { num_labels }
            }
            "attributes" => {
                if arg.is_some() {
                    bail!("--features attributes takes no argument");
                }
                let dim = ds.attr_dim();
                if dim == 0 {
                    bail!("--features attributes: the dataset has no node attributes");
                }
                FeatureSpec::NodeAttributes { dim }
            }
            other => bail!("--features: unknown part {other:?} (expected degree, labels or attributes)"),
        });
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { FeatureSpec::Concat { parts } })
}
