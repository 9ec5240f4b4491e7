//! Graph datasets: the in-memory types, loaders for every supported format, node feature
//! transforms and mini-batching.

pub mod graph;
pub mod features;

pub use features::FeatureSpec;
pub use graph::{Dataset, Graph};
