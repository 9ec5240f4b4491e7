//! `gcleaner attack`: backdoor a graph classifier with one of the four published attacks and
//! write everything a purification benchmark needs (both models, the trigger, the defender's
//! clean sample, the evaluation sets and the measurements).

use std::path::PathBuf;

use anyhow::{bail, Result};
use gcleaner_engine::attacks::{run_attack_with_clean_model, write_attack_dir, AttackConfig, AttackKind, Motif};
use gcleaner_engine::data::{Dataset, FeatureSpec};
use gcleaner_engine::models::{Arch, ModelSpec};

use super::common::{load_data, load_model, BarProgress, DeviceArg};
use super::features_arg::parse_features;

#[derive(clap::Args)]
pub struct AttackArgs {
    /// Dataset: TU directory, GIN text file, JSON file, or a .zip/.tar.gz of one.
    #[arg(long)]
    data: PathBuf,
    /// Keep only these original class labels (comma-separated), remapped to 0..K-1.
    #[arg(long, value_delimiter = ',')]
    keep_classes: Option<Vec<i64>>,
    /// subgraph (Sub-BA), exp (Exp-BA), motif (Motif-BA) or gta (GTA).
    #[arg(long)]
    attack: AttackKind,
    /// Architecture: gin, gcn, gat or sage.
    #[arg(long, default_value = "gin")]
    arch: Arch,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Message-passing layers (default: the published count, GIN 5, GCN/GAT 3, SAGE 7).
    #[arg(long)]
    layers: Option<usize>,
    /// Node features: degree[:MAX], labels[:N], attributes, or a '+'-joined list.
    /// Default: one-hot degree capped for the dataset.
    #[arg(long)]
    features: Option<String>,
    /// Share of the training split to poison (drawn among non-target graphs).
    #[arg(long, default_value_t = 0.05)]
    injection_ratio: f64,
    /// Trigger size as a share of the average graph size (n = max(3, round(avg * t))).
    #[arg(long, default_value_t = 0.2)]
    trigger_ratio: f64,
    /// The label the trigger forces, as the dataset file writes it.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    target_label: i64,
    /// Edge density of the Erdos-Renyi trigger: ceil(density * n(n-1)/2) edges (subgraph, exp).
    #[arg(long, default_value_t = 0.8)]
    density: f64,
    /// Motif-BA's trigger (M31..M46); default: the rarest motif of the training graphs.
    #[arg(long)]
    motif: Option<Motif>,
    /// GTA: bi-level rounds (model training alternating with generator training).
    #[arg(long, default_value_t = 20)]
    bilevel_epochs: usize,
    /// GTA: a node pair becomes a trigger edge when the topology generator's value reaches this.
    #[arg(long, default_value_t = 0.5)]
    gta_threshold: f64,
    /// Size of the defender's clean sample as a share of the whole dataset.
    #[arg(long, default_value_t = 0.03)]
    defender_fraction: f64,
    #[arg(long, default_value_t = 150)]
    epochs: usize,
    #[arg(long, default_value_t = gcleaner_engine::train::TrainConfig::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = gcleaner_engine::train::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Seed of the split, the trigger, the poisoned graphs, the positions and the models.
    #[arg(long, default_value_t = 10)]
    seed: u64,
    /// Build both models from this model spec (JSON; e.g. a gcleaner.model/v2 spec of PyTorch
    /// Geometric's model classes, docs/model-format.md) instead of --arch, --hidden, --layers
    /// and --features.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Reuse the clean model of an earlier run with the same data, seed, architecture, features
    /// and training settings (its clean_model.safetensors) instead of training it again.
    #[arg(long)]
    clean_model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: AttackArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let ds = drop_nodeless_graphs(load_data(&args.data, args.keep_classes.as_deref())?);
    let features: Option<FeatureSpec> = match &args.features {
        Some(text) => Some(parse_features(text, &ds)?),
        None => None,
    };
    let mut config = AttackConfig::new(args.attack, args.arch);
    config.hidden = args.hidden;
    config.num_layers = args.layers;
    config.features = features;
    config.target_label = args.target_label;
    config.injection_ratio = args.injection_ratio;
    config.trigger_ratio = args.trigger_ratio;
    config.density = args.density;
    config.motif = args.motif;
    config.defender_fraction = args.defender_fraction;
    config.gta.bilevel_epochs = args.bilevel_epochs;
    config.gta.threshold = args.gta_threshold;
    config.train.epochs = args.epochs;
    config.train.lr = args.lr;
    config.batch_size = args.batch_size;
    config.seed = args.seed;
    config.device = device;
    if let Some(path) = &args.spec {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.model = Some(ModelSpec::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    }
    let clean_model = match &args.clean_model {
        Some(path) => Some(load_model(path, None, device)?),
        None => None,
    };

    let outcome = run_attack_with_clean_model(&ds, &config, clean_model, &mut BarProgress::new())?;
    write_attack_dir(&outcome, &args.out)?;
    let m = &outcome.metrics;
    println!(
        "{} on {} ({}, seed {}): {}-node trigger, {} poisoned of {} training graphs",
        m.name,
        m.dataset,
        m.arch.name(),
        m.seed,
        m.trigger_nodes,
        m.sizes.n_poisoned,
        m.sizes.n_train
    );
    println!(
        "backdoored model: ASR {:.4} on {} triggered graphs, clean accuracy {:.4} (balanced {:.4})",
        m.backdoored_model.asr, m.sizes.n_eval_triggered, m.backdoored_model.clean_accuracy, m.backdoored_model.balanced_accuracy
    );
    println!(
        "clean model:      ASR {:.4}, clean accuracy {:.4} (balanced {:.4}){}",
        m.clean_model.asr,
        m.clean_model.clean_accuracy,
        m.clean_model.balanced_accuracy,
        if m.clean_model_reused { ", reused" } else { "" }
    );
    println!("defender sample: {} graphs; {:.1}s in all; wrote {}", m.sizes.n_defender, m.timings.total_s, args.out.display());
    Ok(())
}

/// Graphs without nodes (Fingerprint has hundreds) carry no structure a trigger could go into
/// and nothing a model could classify: they are left out, with a note, before the split. The
/// indices in attack.json refer to the dataset without them.
fn drop_nodeless_graphs(ds: Dataset) -> Dataset {
    let before = ds.len();
    let graphs: Vec<_> = ds.graphs.into_iter().filter(|g| g.num_nodes > 0).collect();
    if graphs.len() < before {
        eprintln!(
            "note: left out {} graph(s) of {} without nodes; attack.json indices count the remaining {}",
            before - graphs.len(),
            before,
            graphs.len()
        );
    }
    Dataset { name: ds.name, graphs, class_labels: ds.class_labels }
}
