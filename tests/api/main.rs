//! Service integration tests: one binary, a fresh PostgreSQL database per test.
//! Needs PostgreSQL at GCLEANER_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).

mod helpers;
mod runner;

mod abuse;
mod bench;
mod contract;
mod events;
mod faults;
mod health;
mod jobs;
mod pg_cluster;
mod purify;
mod queue;
mod s3;
mod s3_server;
mod storage;
mod worker_process;
