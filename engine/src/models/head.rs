//! The classifier head shared by every architecture: fc1 -> ReLU -> fc2.

use tch::{nn, nn::Module, Tensor};

use super::init::torch_linear;

#[derive(Debug)]
pub struct Head {
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
}

impl Head {
    pub fn new(p: &nn::Path, hidden: i64, num_classes: i64) -> Head {
        Head { fc1: torch_linear(p / "fc1", hidden, hidden), fc2: torch_linear(p / "fc2", hidden, num_classes) }
    }

    /// Graph embeddings `[B, h]` to logits `[B, C]`.
    pub fn forward(&self, embedding: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(embedding).relu())
    }

    pub fn expected_tensors(hidden: usize, num_classes: usize) -> Vec<super::weights::ExpectedTensor> {
        use super::weights::ExpectedTensor as T;
        vec![
            T::param("fc1.weight", &[hidden, hidden]),
            T::param("fc1.bias", &[hidden]),
            T::param("fc2.weight", &[num_classes, hidden]),
            T::param("fc2.bias", &[num_classes]),
        ]
    }
}
