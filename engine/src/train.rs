//! Supervised training of a graph classifier.
