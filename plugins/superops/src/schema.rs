//! The catalog: a JSON Schema, primary key and cursor per stream.

use serde_json::{json, Map, Value};
use tributary_sdk::{Catalog, StreamDescriptor, SyncMode};

/// Builds an object schema from `name:type` pairs; types are `id` (a string ID), `str`,
/// `time` (zone-less timestamp text), `bool`, `int`, `num`, `money` (decimal text), `json`
/// (an association object), `list`. Everything may be null except the first field.
fn object(fields: &[(&str, &str)]) -> Value {
    let mut props = Map::new();
    for (i, (name, ty)) in fields.iter().enumerate() {
        let mut s = match *ty {
            "id" => {
                json!({"type": ["string", "null"], "description": "ID, always a string (19 digits, beyond 2^53)"})
            }
            "str" => json!({"type": ["string", "null"]}),
            "time" => {
                json!({"type": ["string", "null"], "description": "zone-less UTC timestamp as the API sends it"})
            }
            "date" => json!({"type": ["string", "null"], "format": "date"}),
            "money" => json!({"type": ["string", "null"], "description": "exact decimal text"}),
            "bool" => json!({"type": ["boolean", "null"]}),
            "int" => json!({"type": ["integer", "null"]}),
            "num" => json!({"type": ["number", "null"]}),
            "list" => json!({"type": ["array", "null"]}),
            _ => {
                json!({"type": ["object", "array", "null"], "description": "JSON association; IDs inside are strings"})
            }
        };
        if i == 0 {
            s["type"] = json!("string");
        }
        props.insert((*name).to_string(), s);
    }
    json!({"type": "object", "properties": props, "required": [fields[0].0]})
}

fn stream(name: &str, pk: &str, cursor: Option<&str>, schema: Value) -> StreamDescriptor {
    StreamDescriptor {
        name: name.to_string(),
        json_schema: schema,
        primary_key: vec![pk.to_string()],
        cursor_field: cursor.map(str::to_string),
        sync_modes: if cursor.is_some() {
            vec![SyncMode::FullRefresh, SyncMode::Incremental]
        } else {
            vec![SyncMode::FullRefresh]
        },
    }
}

/// Every stream the connector offers.
pub fn catalog() -> Catalog {
    let t = "time";
    Catalog {
        streams: vec![
            stream(
                "tickets",
                "ticketId",
                Some("updatedTime"),
                object(&[
                    ("ticketId", "id"),
                    ("displayId", "str"),
                    ("subject", "str"),
                    ("ticketType", "str"),
                    ("requestType", "str"),
                    ("source", "str"),
                    ("client", "json"),
                    ("site", "json"),
                    ("requester", "json"),
                    ("additionalRequester", "json"),
                    ("followers", "json"),
                    ("techGroup", "json"),
                    ("technician", "json"),
                    ("status", "str"),
                    ("priority", "str"),
                    ("impact", "str"),
                    ("urgency", "str"),
                    ("category", "str"),
                    ("subcategory", "str"),
                    ("cause", "str"),
                    ("subcause", "str"),
                    ("resolutionCode", "str"),
                    ("sla", "json"),
                    ("createdTime", t),
                    ("updatedTime", t),
                    ("firstResponseDueTime", t),
                    ("firstResponseTime", t),
                    ("firstResponseViolated", "bool"),
                    ("resolutionDueTime", t),
                    ("resolutionTime", t),
                    ("resolutionViolated", "bool"),
                    ("customFields", "json"),
                    ("worklogTimespent", "money"),
                ]),
            ),
            stream(
                "clients",
                "accountId",
                None,
                object(&[
                    ("accountId", "id"),
                    ("name", "str"),
                    ("stage", "str"),
                    ("status", "str"),
                    ("emailDomains", "list"),
                    ("accountManager", "json"),
                    ("primaryContact", "json"),
                    ("secondaryContact", "json"),
                    ("hqSite", "json"),
                    ("technicianGroups", "json"),
                    ("customFields", "json"),
                ]),
            ),
            stream(
                "client_sites",
                "id",
                None,
                object(&[
                    ("id", "id"),
                    ("name", "str"),
                    ("client", "json"),
                    ("hq", "bool"),
                    ("timezoneCode", "str"),
                    ("working24x7", "bool"),
                    ("businessHour", "list"),
                    ("holidayList", "list"),
                    ("line1", "str"),
                    ("line2", "str"),
                    ("line3", "str"),
                    ("city", "str"),
                    ("postalCode", "str"),
                    ("countryCode", "str"),
                    ("stateCode", "str"),
                    ("contactNumber", "str"),
                ]),
            ),
            stream(
                "client_contracts",
                "contractId",
                None,
                object(&[
                    ("contractId", "id"),
                    ("client", "json"),
                    ("contract", "json"),
                    ("startDate", "date"),
                    ("endDate", "date"),
                    ("contractStatus", "str"),
                ]),
            ),
            stream(
                "technicians",
                "userId",
                None,
                object(&[
                    ("userId", "id"),
                    ("firstName", "str"),
                    ("lastName", "str"),
                    ("name", "str"),
                    ("email", "str"),
                    ("contactNumber", "str"),
                    ("designation", "json"),
                    ("businessFunction", "json"),
                    ("team", "json"),
                    ("reportingManager", "json"),
                    ("role", "json"),
                    ("groups", "json"),
                ]),
            ),
            stream(
                "worklog_entries",
                "itemId",
                None,
                object(&[
                    ("itemId", "id"),
                    ("status", "str"),
                    ("serviceItem", "json"),
                    ("billable", "bool"),
                    ("afterHours", "bool"),
                    ("qty", "money"),
                    ("unitPrice", "money"),
                    ("billDateTime", t),
                    ("technician", "json"),
                    ("notes", "str"),
                    ("workItem", "json"),
                ]),
            ),
            stream(
                "alerts",
                "id",
                None,
                object(&[
                    ("id", "id"),
                    ("message", "str"),
                    ("createdTime", t),
                    ("status", "str"),
                    ("severity", "str"),
                    ("description", "str"),
                    ("asset", "json"),
                    ("policy", "json"),
                    ("resolvedTime", t),
                    ("occurrenceCount", "int"),
                ]),
            ),
            stream(
                "assets",
                "assetId",
                None,
                object(&[
                    ("assetId", "id"),
                    ("name", "str"),
                    ("assetClass", "json"),
                    ("client", "json"),
                    ("site", "json"),
                    ("requester", "json"),
                    ("primaryMac", "str"),
                    ("loggedInUser", "str"),
                    ("serialNumber", "str"),
                    ("manufacturer", "str"),
                    ("model", "str"),
                    ("hostName", "str"),
                    ("publicIp", "str"),
                    ("gateway", "str"),
                    ("platform", "str"),
                    ("domain", "str"),
                    ("status", "str"),
                    ("sysUptime", "str"),
                    ("lastCommunicatedTime", t),
                    ("agentVersion", "str"),
                    ("platformFamily", "str"),
                    ("platformCategory", "str"),
                    ("platformVersion", "str"),
                    ("patchStatus", "str"),
                    ("warrantyExpiryDate", "date"),
                    ("purchasedDate", "date"),
                    ("customFields", "json"),
                    ("lastReportedTime", t),
                    ("deviceCategory", "json"),
                ]),
            ),
            stream(
                "invoices",
                "invoiceId",
                None,
                object(&[
                    ("invoiceId", "id"),
                    ("displayId", "str"),
                    ("client", "json"),
                    ("site", "json"),
                    ("invoiceDate", "date"),
                    ("dueDate", "date"),
                    ("statusEnum", "str"),
                    ("sentToClient", "bool"),
                    ("items", "list"),
                    ("taxes", "list"),
                    ("discountAmount", "money"),
                    ("additionalDiscount", "money"),
                    ("additionalDiscountRate", "money"),
                    ("totalAmount", "money"),
                    ("notes", "str"),
                    ("paymentDate", "date"),
                    ("paymentMethod", "json"),
                    ("paymentReference", "str"),
                    ("invoicePaymentTerm", "json"),
                ]),
            ),
            stream(
                "sla_summary",
                "client_id",
                None,
                object(&[
                    ("client_id", "id"),
                    ("client_name", "str"),
                    ("tickets", "int"),
                    ("resolved_tickets", "int"),
                    ("first_response_measured", "int"),
                    ("first_response_met", "int"),
                    ("first_response_attainment", "num"),
                    ("resolution_measured", "int"),
                    ("resolution_met", "int"),
                    ("resolution_attainment", "num"),
                    ("mean_resolution_hours", "num"),
                    ("window_start", t),
                    ("window_end", t),
                ]),
            ),
            stream(
                "technician_productivity",
                "technician_id",
                None,
                object(&[
                    ("technician_id", "id"),
                    ("technician_name", "str"),
                    ("worklog_entries", "int"),
                    ("worklog_hours", "money"),
                    ("billable_hours", "money"),
                    ("billable_share", "num"),
                    ("tickets_resolved", "int"),
                    ("window_start", t),
                    ("window_end", t),
                ]),
            ),
        ],
    }
}
