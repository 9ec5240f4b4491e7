//! The engine's integration tests, one binary: each module is one area (attacks, baselines,
//! data loaders, PyG interop, purification, the report), linked once against libtorch.

mod attacks_gta;
mod attacks_inject;
mod attacks_motif;
mod attacks_pipeline;
mod attacks_poison;
mod attacks_trigger;
mod baselines_aids;
mod baselines_inference;
mod baselines_support;
mod baselines_training;
mod data_archives;
mod data_loaders;
mod data_real;
mod interop_pyg;
mod purify_contract;
mod purify_planted;
mod purify_scan;
mod report_html;
mod small_gin;
