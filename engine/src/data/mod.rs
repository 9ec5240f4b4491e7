//! Graph datasets: the in-memory types, loaders for every supported format (TU folders, GIN
//! text, gcleaner JSON, and archives of them), node feature transforms, mini-batching and splits.
//! The formats and limits are documented in docs/data-formats.md.

pub mod archive;
pub mod batch;
pub mod features;
pub mod gin_text;
pub(crate) mod graph;
pub mod json;
pub mod limits;
pub mod load;
pub mod split;
pub mod synthetic;
mod text;
pub mod tu;

pub use batch::{make_batches, GraphBatch};
pub use features::FeatureSpec;
pub use graph::{Dataset, Graph};
pub use load::load_dataset;
