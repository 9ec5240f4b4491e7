//! gcleaner-engine: the synchronous core of gcleaner.
//!
//! Graph datasets and their loaders ([`data`]), the four GNN graph classifiers with
//! PyTorch-Geometric-compatible safetensors weights ([`models`]), training and metrics
//! ([`train`], [`metrics`]). The engine never touches async runtimes or databases: the service
//! calls it from blocking threads.

pub mod allocator;
pub mod attacks;
pub mod data;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod models;
pub mod montage;
pub mod optim;
pub mod progress;
pub mod purify;
pub mod rng;
pub mod threads;
pub mod train;

pub use error::{Error, Result};
