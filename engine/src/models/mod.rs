//! The four G-Cleaner graph classifiers (GIN, GCN, GAT, GraphSAGE) with PyTorch Geometric
//! parameter names, and safetensors weight I/O.

pub mod spec;

pub use spec::{Arch, ModelSpec, Pooling, SPEC_FORMAT, SPEC_METADATA_KEY};
