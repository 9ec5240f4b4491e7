//! Service integration tests.
