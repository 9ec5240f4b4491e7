//! End-to-end tests of the `gcleaner` binary's research commands.

mod errors;
mod interop;
mod reproduce;
mod scan;
