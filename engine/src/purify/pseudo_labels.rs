//! Auxiliary clean data (the paper's Table 5): graphs drawn from another dataset (NCI1 for an
//! AIDS model) carry no labels in the model's label space, so each graph takes the model's own
//! prediction as its label. Unlearning then teaches the model to keep its clean prediction when
//! the trigger is added, which is all the robust loss needs from a label.

use crate::data::Dataset;
use crate::models::GnnModel;
use crate::Result;

/// Graphs per forward pass when labelling.
const LABEL_BATCH: usize = 256;

/// `sample` with every graph labelled by `model`'s prediction, in the model's label space
/// (its spec's `class_labels`, else `0..C`). A graph the model's features cannot be built for
/// is an error naming it.
pub fn pseudo_label(model: &GnnModel, sample: &Dataset) -> Result<Dataset> {
    crate::models::check_sample_features(model, sample)?;
    let spec = model.spec();
    let graphs: Vec<&crate::data::Graph> = sample.graphs.iter().collect();
    let predicted = crate::metrics::predict_plain(model, &graphs, LABEL_BATCH)?;
    let class_labels = spec.class_labels.clone().unwrap_or_else(|| (0..spec.num_classes as i64).collect());
    let graphs = sample.graphs.iter().zip(predicted).map(|(g, class)| crate::data::Graph { label: class, ..g.clone() }).collect();
    Ok(Dataset { name: sample.name.clone(), graphs, class_labels })
}
