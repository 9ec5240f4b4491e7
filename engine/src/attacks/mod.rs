//! The four graph-classification backdoor attacks gcleaner is measured against, and the pieces
//! they share: trigger subgraphs ([`trigger`], [`motif`]), trigger injection ([`inject`]),
//! where triggers go ([`placement`]), poisoning and triggered evaluation sets ([`poison`]), and
//! the attack.json record ([`description`]), the whole attack run ([`pipeline`]) and how a model
//! is measured against an attack ([`evaluate`]).
//!
//! | attack   | trigger                       | placement                          |
//! |----------|-------------------------------|------------------------------------|
//! | Sub-BA   | Erdos-Renyi subgraph          | random nodes                       |
//! | Exp-BA   | Erdos-Renyi subgraph          | most important nodes (GNNExplainer)|
//! | Motif-BA | rarest 3/4-node motif         | highest-degree nodes               |
//! | GTA      | generated per graph           | generated per graph                |

pub(crate) mod description;
pub mod evaluate;
pub(crate) mod gta;
pub mod inject;
pub(crate) mod motif;
pub mod pipeline;
pub(crate) mod placement;
pub(crate) mod poison;
pub(crate) mod trigger;

pub use description::{AttackDescription, AttackKind, GraphTrigger, TriggerDescription};
pub use evaluate::{evaluate_on_attack, evaluate_sets, load_eval_sets, AttackEvalSets, AttackMetrics, AttackSource};
pub use gta::GtaConfig;
pub use inject::inject;
pub use motif::{count_motifs, count_motifs_in, Motif, MotifCounts};
pub use pipeline::{
    run_attack, run_attack_with_clean_model, split_for_attack, write_attack_dir, AttackConfig, AttackOutcome, AttackRunMetrics,
    AttackSplit,
};
pub use placement::{Placement, PlacementKind};
pub use poison::{
    check_trigger_fits, poison_training_set, resolve_target_class, select_poisoned, triggered_eval_set, AttackParams,
    InjectedGraph, Poisoning, MIN_TRIGGER_NODES,
};
pub use trigger::{Trigger, DEFAULT_TRIGGER_DENSITY};
