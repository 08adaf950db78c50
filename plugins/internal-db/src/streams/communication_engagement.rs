//! `communication_engagement`: every touch point between the MSP and a client.

use super::Kind::*;
use super::{col, null, StreamDef};

pub(super) const STREAM: StreamDef = StreamDef {
    name: "communication_engagement",
    description: "Client communications: channel, direction, time and response time",
    client_column: "client_id",
    columns: &[
        col("id", Int, "Communication id"),
        col("client_id", Int, "Client (client_profiles.id)"),
        col("channel", Text, "email, phone, portal, meeting or chat"),
        col("direction", Text, "inbound or outbound"),
        col("occurred_at", Timestamp, "When it happened"),
        null(
            "response_time_minutes",
            Int,
            "Minutes until the MSP responded (inbound only)",
        ),
        col("subject", Text, "Subject or topic"),
        col("created_at", Timestamp, "When the row was created"),
        col(
            "updated_at",
            Timestamp,
            "Last modification (the incremental cursor)",
        ),
    ],
};
