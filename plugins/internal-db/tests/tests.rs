//! Integration tests of the internal-db connector, all in one binary.
//!
//! The same scenarios run against SQLite (always), PostgreSQL (`TRIBUTARY_TEST_POSTGRES_URL`)
//! and MariaDB/MySQL (`TRIBUTARY_TEST_MYSQL_URL`); without the variable a service test is
//! skipped with a notice, unless `CI` is set, in which case it fails.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod suite;
