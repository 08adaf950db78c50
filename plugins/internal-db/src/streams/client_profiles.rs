//! `client_profiles`: one row per client company; the anchor for cross-source identity.

use super::Kind::*;
use super::{col, null, StreamDef};

pub(super) const STREAM: StreamDef = StreamDef {
    name: "client_profiles",
    description: "Client companies with their service tier, account manager and ids in SuperOps and QuickBooks",
    client_column: "id",
    columns: &[
        col("id", Int, "Internal client id (what the client filter matches)"),
        col("company_name", Text, "Trading name"),
        col("industry", Text, "Industry vertical"),
        col("employee_count", Int, "Head count"),
        col("address_line", Text, "Street address"),
        col("city", Text, "City"),
        col("region", Text, "State, province or county"),
        col("postal_code", Text, "Postal code"),
        col("country", Text, "ISO 3166-1 alpha-2 country code"),
        col("phone", Text, "Main phone number"),
        col("email_domain", Text, "Email domain of the client's staff"),
        col("service_tier", Text, "essentials, professional, enterprise or premium"),
        col("account_manager", Text, "MSP account manager responsible for the client"),
        col("status", Text, "onboarding, active or churned"),
        null("superops_account_id", Text, "Client id in SuperOps"),
        null("quickbooks_customer_id", Text, "Customer id in QuickBooks Online"),
        col("created_at", Timestamp, "When the row was created"),
        col("updated_at", Timestamp, "Last modification (the incremental cursor)"),
    ],
};
