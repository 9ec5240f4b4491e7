//! Accuracy, per-class recall, confusion matrices and attack success rate.
