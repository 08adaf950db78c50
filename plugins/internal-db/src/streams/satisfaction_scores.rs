//! `satisfaction_scores`: client survey responses on several dimensions.

use super::Kind::*;
use super::{col, null, StreamDef};

pub(super) const STREAM: StreamDef = StreamDef {
    name: "satisfaction_scores",
    description: "Client satisfaction surveys: overall, responsiveness, quality, communication (1-5) and NPS (0-10)",
    client_column: "client_id",
    columns: &[
        col("id", Int, "Survey response id"),
        col("client_id", Int, "Client (client_profiles.id)"),
        col("survey_date", Date, "Date the survey was answered"),
        col("overall", Int, "Overall satisfaction, 1-5"),
        col("responsiveness", Int, "Responsiveness, 1-5"),
        col("quality", Int, "Quality of work, 1-5"),
        col("communication", Int, "Communication, 1-5"),
        col("nps", Int, "Net promoter score answer, 0-10"),
        null("comment", Text, "Free-text comment"),
        col("created_at", Timestamp, "When the row was created"),
        col("updated_at", Timestamp, "Last modification (the incremental cursor)"),
    ],
};
