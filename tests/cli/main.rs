//! End-to-end tests of the `gcleaner` binary's research commands.

mod interop;
mod errors;
mod reproduce;
