//! gcleaner-engine: the synchronous core of gcleaner. It never touches async runtimes or
//! databases: the service calls it from blocking threads.
//!
//! What it can do, and where:
//!
//! | capability | module |
//! |---|---|
//! | read graph datasets (TU folders, GIN text, JSON, archives) and build node features | [`data`] |
//! | the published G-Cleaner classifiers and PyG's own `BasicGNN` classes, with PyG-compatible safetensors weights | [`models`] |
//! | train a classifier; accuracy, balanced accuracy, per-class recall | [`train`], [`metrics`] |
//! | node importance (saliency, GNNExplainer, Grad-CAM) | [`explain`] |
//! | write a trigger into graphs at chosen nodes, differentiably (internal) | `montage` |
//! | plant the four published backdoors and measure attack success | [`attacks`] |
//! | G-Cleaner purification: recovery, the verdict, unlearning, the report | [`purify`] |
//! | the baseline defences G-Cleaner is compared with (fine-tuning, ABL, pruning, smoothing) | [`baselines`] |
//! | progress and cancellation, seeded randomness, libtorch threads, the fused optimiser | [`progress`], [`rng`], [`threads`], `optim` (internal) |
//!
//! Dependencies point one way: `purify` builds on `attacks` (to measure an attack's evaluation
//! sets), both on `montage`, `explain` and `models`, and those on `data`; `baselines` builds on
//! `models` and `data` alone. Modules marked internal are not part of the public surface.

pub mod allocator;
pub mod attacks;
pub mod baselines;
pub mod data;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod models;
pub(crate) mod montage;
pub(crate) mod optim;
pub mod progress;
pub mod purify;
pub mod rng;
pub mod threads;
pub mod train;

pub use error::{Error, Result};
