//! `contracts`: service agreements with their value, term and renewal.

use super::Kind::*;
use super::{col, StreamDef};

pub(super) const STREAM: StreamDef = StreamDef {
    name: "contracts",
    description: "Client contracts: type, monthly value, term, renewal date and status",
    client_column: "client_id",
    columns: &[
        col("id", Int, "Contract id"),
        col("client_id", Int, "Client (client_profiles.id)"),
        col(
            "contract_type",
            Text,
            "managed_services, break_fix, project, backup or security",
        ),
        col(
            "monthly_value",
            Decimal,
            "Monthly recurring value, exact decimal with two places",
        ),
        col("currency", Text, "ISO 4217 currency code"),
        col("term_months", Int, "Contract term in months"),
        col("start_date", Date, "First day of the contract"),
        col("renewal_date", Date, "Date the contract renews or ends"),
        col("status", Text, "active, expired, cancelled or pending"),
        col("auto_renew", Bool, "Whether it renews automatically"),
        col("created_at", Timestamp, "When the row was created"),
        col(
            "updated_at",
            Timestamp,
            "Last modification (the incremental cursor)",
        ),
    ],
};
