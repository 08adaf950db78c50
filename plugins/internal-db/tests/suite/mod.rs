/// Databases, reads and assertions shared by the scenarios.
mod common;
/// Hard deletes (key reconciliation) and soft deletes, on every dialect.
mod deletions;
/// The embedded migrations, on every dialect.
mod migrations;
/// MariaDB / MySQL.
mod mysql;
/// PostgreSQL.
mod postgres;
/// Behaviour every dialect must show, written once.
mod scenarios;
/// SQLite, plus the tests that only make sense there (sample_data setting, generator).
mod sqlite;
