//! Explanations of a graph classifier's predictions: per-node importance (gradient saliency,
//! GNNExplainer) and Grad-CAM heat maps.

pub(crate) mod gnnexplainer;
pub mod gradcam;
pub mod saliency;

use serde::{Deserialize, Serialize};

/// How node importance is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExplainerKind {
    /// Gradient x input of the predicted class's log-probability (one backward pass).
    Saliency,
    /// GNNExplainer: an optimised soft edge and feature mask.
    GnnExplainer,
}
