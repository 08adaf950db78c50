//! Integration tests of the internal-db connector, all in one binary.
//!
//! The same scenarios run against SQLite (always), PostgreSQL (`TRIBUTARY_TEST_POSTGRES_URL`)
//! and MariaDB/MySQL (`TRIBUTARY_TEST_MYSQL_URL`); without the variable the conventional
//! local URL is used, an unreachable service fails with how to start it, and
//! `TRIBUTARY_SKIP_SERVICES=postgres,mysql` skips on purpose (never under `CI`).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod suite;
