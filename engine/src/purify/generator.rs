//! The trigger generator: an MLP over the features of a graph's slot nodes that proposes a
//! trigger adjacency over the slots and, where node features are not structural, the slot nodes'
//! features. Outputs are straight-through discretised (binary adjacency, one-hot labels) so the
//! model always sees a graph that could occur.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::data::FeatureSpec;
use crate::montage::{num_pairs, straight_through_binary, FeaturePart};

pub struct TriggerGenerator {
    pub vs: nn::VarStore,
    hidden: nn::Linear,
    adjacency: nn::Linear,
    features: Option<nn::Linear>,
    slots: usize,
    parts: Vec<FeaturePart>,
}

/// What a generator proposes for a batch.
pub struct TriggerProposal {
    /// Binarised adjacency (straight-through), `[B, num_pairs]`.
    pub adjacency: Tensor,
    /// Generated slot features (straight-through one-hot where discrete), `[B, slots, G]`.
    pub features: Option<Tensor>,
}

impl TriggerGenerator {
    pub fn new(slots: usize, in_features: usize, parts: &[FeaturePart], hidden: usize, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let generated: usize = parts.iter().filter(|p| !p.is_structural()).map(FeaturePart::dim).sum();
        let hidden_layer = nn::linear(&root / "hidden", (slots * in_features) as i64, hidden as i64, Default::default());
        let adjacency = nn::linear(&root / "adjacency", hidden as i64, num_pairs(slots) as i64, Default::default());
        let features = (generated > 0)
            .then(|| nn::linear(&root / "features", hidden as i64, (slots * generated) as i64, Default::default()));
        TriggerGenerator { vs, hidden: hidden_layer, adjacency, features, slots, parts: parts.to_vec() }
    }

    pub fn propose(&self, slot_input: &Tensor) -> TriggerProposal {
        let h = self.hidden.forward(slot_input).relu();
        // Continuous in [0, 1], binarised straight-through.
        let adjacency = straight_through_binary(&self.adjacency.forward(&h).sigmoid());
        let features = self.features.as_ref().map(|layer| {
            let raw = layer.forward(&h).view([slot_input.size()[0], self.slots as i64, -1]);
            let mut offset = 0i64;
            let mut columns = Vec::new();
            for part in self.parts.iter().filter(|p| !p.is_structural()) {
                let dim = part.dim() as i64;
                let chunk = raw.narrow(2, offset, dim);
                columns.push(match part.spec {
                    FeatureSpec::NodeLabelsOneHot { .. } => straight_through_argmax(&chunk),
                    _ => chunk,
                });
                offset += dim;
            }
            Tensor::cat(&columns, 2)
        });
        TriggerProposal { adjacency, features }
    }
}

/// One-hot of the last-dimension argmax in the forward pass, softmax gradient backward.
fn straight_through_argmax(logits: &Tensor) -> Tensor {
    let soft = logits.softmax(-1, Kind::Float);
    let hard = soft.argmax(-1, false).one_hot(logits.size()[logits.dim() - 1]).to_kind(Kind::Float);
    &hard + &soft - soft.detach()
}

impl TriggerGenerator {
    /// `(offset, width)` of every one-hot block within the generated feature columns.
    pub fn discrete_blocks(&self) -> Vec<(usize, usize)> {
        let mut offset = 0;
        let mut blocks = Vec::new();
        for part in self.parts.iter().filter(|p| !p.is_structural()) {
            if matches!(part.spec, FeatureSpec::NodeLabelsOneHot { .. }) {
                blocks.push((offset, part.dim()));
            }
            offset += part.dim();
        }
        blocks
    }
}
