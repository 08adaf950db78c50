//! Local emulators of the SaaS APIs Tributary reads, for tests, demos and connector
//! authors: [`quickbooks`] (QuickBooks Online Accounting API v3) and [`superops`]
//! (SuperOps MSP GraphQL). Each serves real HTTP on loopback from deterministic generated
//! data and reproduces the documented quirks and failure modes.

pub mod connect;
pub mod quickbooks;
pub mod superops;
