/// Databases, reads and assertions shared by the scenarios.
mod common;
/// MariaDB / MySQL.
mod mysql;
/// PostgreSQL.
mod postgres;
/// Behaviour every dialect must show, written once.
mod scenarios;
/// SQLite, plus the tests that only make sense there (sample_data setting, generator).
mod sqlite;
