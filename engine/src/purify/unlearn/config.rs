//! What robust and paper-mode unlearning can be told: [`UnlearnConfig`], its defaults and the
//! ranges it must keep.

use serde::{Deserialize, Serialize};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlearnMode {
    Robust,
    Paper,
}

impl std::str::FromStr for UnlearnMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "robust" => Ok(UnlearnMode::Robust),
            "paper" => Ok(UnlearnMode::Paper),
            other => Err(format!("unknown unlearning mode {other:?} (expected robust or paper)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnlearnConfig {
    pub mode: UnlearnMode,
    pub epochs: usize,
    /// Robust mode: unlearning stops after this many epochs once the trigger flips no more than
    /// `converged_flip_rate` of the copies (the purifier raises that to the per-model null's
    /// rate, re-measured on the changing model after every epoch, so a pattern keeps the effect
    /// natural patterns have).
    pub min_epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// Random node sets per graph, re-sampled every epoch, besides the explainer's positions.
    pub positions: usize,
    /// Weight of the heat-map term (paper mode).
    pub lambda: f64,
    /// Fine-tuning epochs of the teacher on the clean sample; `None`: the mode's default
    /// ([`UnlearnConfig::teacher_epochs_for_mode`]).
    pub teacher_epochs: Option<usize>,
    /// Weight of the cross-entropy terms (robust mode).
    pub ce_weight: f64,
    /// Extra weight of graphs whose label is not the suspected target (robust mode).
    pub non_target_weight: f64,
    /// An epoch after which a class's recall has fallen by more than this (absolute) below its
    /// start is not kept: the run returns the last epoch that stayed within it.
    pub collapse_drop: f64,
    /// Robust mode: each triggered copy drops each edge of its pattern with this probability,
    /// re-drawn every epoch, so the unlearning covers the patterns near the recovered one.
    /// Recovery returns the densest pattern that works (a 4-clique where the attacker planted a
    /// 4-clique minus one edge), and a model taught to ignore only that pattern can still
    /// answer to its sub-patterns.
    pub pattern_dropout: f64,
    /// Robust mode: divide logits by the model's own logit scale (the median margin between
    /// its top two classes on the clean unlearning graphs, at least 1) before every loss term.
    pub logit_scaling: bool,
    /// Robust mode: weight the clean graphs' cross-entropy by inverse class frequency (the
    /// triggered copies' term always is).
    pub balance_clean_classes: bool,
    /// Robust mode: train the last conv block (and its BatchNorm) besides the head (fc1, fc2);
    /// false trains the head alone.
    pub train_last_conv: bool,
    /// Robust mode: when the recovered trigger still flips more than `converged_flip_rate` of
    /// the unlearning copies after `epochs`, training goes on, an epoch at a time, up to this
    /// many epochs in all. A GIN unlearns a backdoor within 5-10 epochs, but on GCN and GAT
    /// models (normalised aggregation, lower logit margins) the flip rate was still 0.25-0.7
    /// after 30 epochs and the backdoor survived; at 60 it was gone, at no cost in accuracy.
    pub max_epochs: usize,
    /// Robust mode: the share of non-target unlearning copies the trigger may still send to
    /// the target (measured during the epoch) for unlearning to count as converged.
    pub converged_flip_rate: f64,
    /// Robust mode: weight of a mixup term that holds the head to the teacher between the
    /// clean graphs: each step mixes every clean graph's pooled embedding with a random other
    /// one's (weight drawn uniformly from 0..1) and asks the head for the teacher's
    /// probabilities mixed the same way (0: none). Trained on two dozen graphs, the head
    /// otherwise bends wherever no clean graph pins it, and unseen target-class graphs fell
    /// across it (docs/experiments.md).
    pub mixup_weight: f64,
}

impl Default for UnlearnConfig {
    fn default() -> Self {
        UnlearnConfig {
            mode: UnlearnMode::Robust,
            epochs: 30,
            min_epochs: 3,
            lr: 0.001,
            batch_size: 64,
            positions: 10,
            lambda: 0.5,
            teacher_epochs: None,
            ce_weight: 3.0,
            non_target_weight: 6.0,
            collapse_drop: 0.3,
            pattern_dropout: 0.2,
            logit_scaling: true,
            balance_clean_classes: true,
            train_last_conv: true,
            max_epochs: 90,
            converged_flip_rate: 0.05,
            mixup_weight: 5.0,
        }
    }
}

impl UnlearnConfig {
    /// The most epochs a run may take: robust mode trains past `epochs` (up to `max_epochs`)
    /// while the trigger still flips the unlearning copies; the paper mode runs `epochs`.
    pub fn epoch_cap(&self) -> usize {
        match self.mode {
            UnlearnMode::Robust => self.max_epochs.max(self.epochs),
            UnlearnMode::Paper => self.epochs,
        }
    }

    /// The teacher's fine-tuning epochs: the configured ones, else 20 in paper mode (the method as
    /// published: a copy fine-tuned briefly on the clean sample) and 0 in robust mode, where the
    /// teacher is the input model itself. Its answers on clean graphs are what unlearning must
    /// keep, and a copy fine-tuned on two dozen graphs answers worse (docs/experiments.md). The
    /// teacher only ever sees clean graphs, so the backdoor it carries is not taught back.
    pub fn teacher_epochs_for_mode(&self) -> usize {
        self.teacher_epochs.unwrap_or(match self.mode {
            UnlearnMode::Paper => 20,
            UnlearnMode::Robust => 0,
        })
    }

    /// Refuses values that have no meaning (see [`super::PurifyConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        use crate::purify::config_check::{at_least, fraction, non_negative, positive};
        positive("unlearn.lr", self.lr)?;
        at_least("unlearn.batch_size", self.batch_size, 1)?;
        non_negative("unlearn.lambda", self.lambda)?;
        non_negative("unlearn.ce_weight", self.ce_weight)?;
        non_negative("unlearn.non_target_weight", self.non_target_weight)?;
        fraction("unlearn.collapse_drop", self.collapse_drop, true)?;
        fraction("unlearn.converged_flip_rate", self.converged_flip_rate, true)?;
        non_negative("unlearn.mixup_weight", self.mixup_weight)?;
        fraction("unlearn.pattern_dropout", self.pattern_dropout, false)?;
        Ok(())
    }

    /// Unlearning on auxiliary data: graphs of another dataset, labelled with the model's own
    /// predictions (`PurifyConfig::pseudo_labels`). Such a sample says nothing about how the
    /// model should behave on its own data: the clean terms only hold it to its predictions on
    /// foreign graphs, so whatever unlearning changes carries over to its own graphs unchecked.
    /// It therefore trains the head alone, for half the epochs: less accuracy lost on the
    /// model's own data, at the price of more of the backdoor left (docs/experiments.md).
    pub fn auxiliary() -> Self {
        let default = UnlearnConfig::default();
        UnlearnConfig { epochs: default.epochs / 2, min_epochs: default.min_epochs / 2, train_last_conv: false, ..default }
    }
}
