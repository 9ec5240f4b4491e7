//! Whether a clean sample fits a model: every graph yields node features of the model's width
//! and every label is one of its classes. Checked before any defence spends time on it.

use crate::data::Dataset;
use crate::models::GnnModel;
use crate::{Error, Result};

/// Checks that the sample fits the model: every graph yields features of the model's width and
/// every label is one of its classes.
pub fn check_sample(model: &GnnModel, sample: &Dataset) -> Result<()> {
    check_sample_features(model, sample)?;
    let spec = model.spec();
    if sample.num_classes() > spec.num_classes {
        return Err(Error::invalid(format!(
            "the clean sample has {} classes but the model predicts {}",
            sample.num_classes(),
            spec.num_classes
        )));
    }
    Ok(())
}

/// Checks that every graph of the sample yields node features of the model's width.
pub fn check_sample_features(model: &GnnModel, sample: &Dataset) -> Result<()> {
    let spec = model.spec();
    if sample.is_empty() {
        return Err(Error::invalid("the clean sample holds no graphs"));
    }
    if spec.features.dim() != spec.in_features {
        return Err(Error::invalid(format!(
            "model spec: features give {} columns but in_features is {}",
            spec.features.dim(),
            spec.in_features
        )));
    }
    for (i, g) in sample.graphs.iter().enumerate() {
        if g.num_nodes == 0 {
            return Err(Error::invalid(format!("clean sample graph {i} has no nodes")));
        }
        spec.features.node_features(g).map_err(|e| Error::invalid(format!("clean sample graph {i}: {e}")))?;
    }
    Ok(())
}
