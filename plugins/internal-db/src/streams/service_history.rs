//! `service_history`: tickets and service work performed for clients.

use super::Kind::*;
use super::{col, null, StreamDef};

pub(super) const STREAM: StreamDef = StreamDef {
    name: "service_history",
    description: "Service tickets worked for clients: technician, category, priority, time spent and resolution",
    client_column: "client_id",
    columns: &[
        col("id", Int, "Service record id"),
        col("client_id", Int, "Client (client_profiles.id)"),
        col("ticket_ref", Text, "Ticket reference, e.g. T-0001234"),
        col("technician", Text, "Technician who did the work"),
        col("category", Text, "Work category"),
        col("priority", Text, "low, medium, high or critical"),
        col("opened_at", Timestamp, "When the ticket was opened"),
        null("resolved_at", Timestamp, "When it was resolved; null while open"),
        col("hours_worked", Decimal, "Hours worked, exact decimal with two places"),
        col("billable", Bool, "Whether the time is billable"),
        null("resolution", Text, "Resolution notes; null while open"),
        col("created_at", Timestamp, "When the row was created"),
        col("updated_at", Timestamp, "Last modification (the incremental cursor)"),
    ],
};
