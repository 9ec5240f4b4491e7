//! `gcleaner eval` and `gcleaner predict`: run a saved model over a dataset.

use std::path::PathBuf;

use anyhow::Result;
use gcleaner_engine::data::batch::make_batches;
use gcleaner_engine::metrics;
use serde_json::json;

use super::common::{align_to_model, load_data, load_model, DeviceArg};

#[derive(clap::Args)]
pub struct ModelDataArgs {
    /// Model weights (.safetensors, spec embedded or given with --spec).
    #[arg(long)]
    model: PathBuf,
    /// Model spec JSON, for weights saved without an embedded spec.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Dataset: TU directory, GIN text file, JSON file, or a .zip/.tar.gz of one.
    #[arg(long)]
    data: PathBuf,
    /// Keep only these original class labels (comma-separated), remapped to 0..K-1.
    #[arg(long, value_delimiter = ',')]
    keep_classes: Option<Vec<i64>>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn run_model(args: &ModelDataArgs) -> Result<(metrics::Predictions, usize, usize)> {
    let device = args.device.resolve()?;
    let model = load_model(&args.model, args.spec.as_ref(), device)?;
    let ds = align_to_model(load_data(&args.data, args.keep_classes.as_deref())?, model.spec(), &args.data)?;
    let indices: Vec<usize> = (0..ds.len()).collect();
    let batches = make_batches(&ds, &indices, args.batch_size.max(1), &model.spec().features, device)?;
    let p = metrics::predict(&model, &batches)?;
    Ok((p, model.spec().num_classes, ds.len()))
}

pub fn eval(args: ModelDataArgs) -> Result<()> {
    let (p, num_classes, _) = run_model(&args)?;
    let e = metrics::evaluate(&p.classes, &p.labels, num_classes);
    if args.json {
        let per_class: Vec<f64> = e.per_class.iter().map(|c| c.recall).collect();
        let out = json!({
            "accuracy": e.accuracy,
            "balanced_accuracy": e.balanced_accuracy,
            "per_class": per_class,
            "support": e.per_class.iter().map(|c| c.support).collect::<Vec<_>>(),
            "confusion": e.confusion,
            "n": e.n,
        });
        println!("{out}");
    } else {
        println!("graphs: {}", e.n);
        println!("accuracy: {:.4}  (balanced {:.4})", e.accuracy, e.balanced_accuracy);
        for c in &e.per_class {
            println!("  class {}: recall {:.4} of {}", c.class, c.recall, c.support);
        }
        println!("confusion (rows: true class, columns: predicted):");
        for row in &e.confusion {
            println!("  {}", row.iter().map(|v| format!("{v:>6}")).collect::<String>());
        }
    }
    Ok(())
}

pub fn predict(args: ModelDataArgs) -> Result<()> {
    let (p, _, _) = run_model(&args)?;
    if args.json {
        let predictions: Vec<_> = (0..p.indices.len())
            .map(|i| {
                json!({
                    "index": p.indices[i],
                    "logits": p.logits[i],
                    "log_probs": p.log_probs[i],
                    "class": p.classes[i],
                })
            })
            .collect();
        println!("{}", json!({ "predictions": predictions }));
    } else {
        for i in 0..p.indices.len() {
            println!("{}\t{}", p.indices[i], p.classes[i]);
        }
    }
    Ok(())
}
