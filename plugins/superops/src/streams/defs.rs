//! The list streams: which query, which fields, which key, how a row maps to a client and
//! to a date. Selections follow the reference: JSON associations as leaves, object-typed
//! fields sub-selected.

use serde_json::Value;

use crate::json::{text_of, RowView};

/// Where the `ListInfoInput` goes in the query's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The argument is the `ListInfoInput`.
    ListInfo,
    /// `{listInfo, clientId?}` (sites).
    Sites,
    /// `{module, listInfo}` (worklogs).
    Worklogs,
}

/// A list stream.
#[derive(Debug)]
pub struct StreamDef {
    /// Stream name.
    pub name: &'static str,
    /// Root field.
    pub root: &'static str,
    /// Type of `$input`.
    pub arg_type: &'static str,
    /// Key of the row list in the result.
    pub list_key: &'static str,
    /// Selection of one row.
    pub selection: &'static str,
    /// Argument shape.
    pub shape: Shape,
    /// Attribute full scans sort by (ascending), where the API is known to accept one.
    pub sort: Option<&'static str>,
    /// Primary key field (a top-level ID).
    pub pk: fn(&RowView) -> Option<String>,
    /// The client (account id) a row belongs to; `None` when not client-scoped.
    pub client: Option<fn(&RowView) -> Option<String>>,
    /// The business date the window's start/end apply to, if any.
    pub date: Option<fn(&RowView) -> Option<&str>>,
}

fn client_account(v: &RowView) -> Option<String> {
    text_of(v.client.as_ref().and_then(|c| c.get("accountId")))
}

fn alert_client(v: &RowView) -> Option<String> {
    text_of(
        v.asset
            .as_ref()
            .and_then(|a| a.get("client"))
            .and_then(|c| c.get("accountId")),
    )
}

/// Tickets' selection: every documented field, SLA fields included.
pub const TICKET_FIELDS: &str = "ticketId displayId subject ticketType requestType source client site requester additionalRequester followers techGroup technician status priority impact urgency category subcategory cause subcause resolutionCode sla createdTime updatedTime firstResponseDueTime firstResponseTime firstResponseViolated resolutionDueTime resolutionTime resolutionViolated customFields worklogTimespent";

/// The list streams, in catalog order.
pub const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "tickets",
        root: "getTicketList",
        arg_type: "ListInfoInput!",
        list_key: "tickets",
        selection: TICKET_FIELDS,
        shape: Shape::ListInfo,
        sort: Some("createdTime"),
        pk: |v| v.ticket_id.clone(),
        client: Some(client_account),
        date: Some(|v| v.updated_time.as_deref()),
    },
    StreamDef {
        name: "clients",
        root: "getClientList",
        arg_type: "ListInfoInput!",
        list_key: "clients",
        selection: "accountId name stage status emailDomains accountManager primaryContact secondaryContact hqSite technicianGroups customFields",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.account_id.clone(),
        client: Some(|v| v.account_id.clone()),
        date: None,
    },
    StreamDef {
        name: "client_sites",
        root: "getClientSiteList",
        arg_type: "GetClientSiteListInput!",
        list_key: "sites",
        selection: "id name client hq timezoneCode working24x7 businessHour { day start end } holidayList { id name } line1 line2 line3 city postalCode countryCode stateCode contactNumber",
        shape: Shape::Sites,
        sort: None,
        pk: |v| v.id.clone(),
        client: Some(client_account),
        date: None,
    },
    StreamDef {
        name: "client_contracts",
        root: "getClientContractList",
        arg_type: "ListInfoInput",
        list_key: "clientContracts",
        selection: "contractId client startDate endDate contractStatus contract { contractId name description contractType billableContract { chargeItem frequencyType billableSiteType sellingPrice { model details { value afterHoursValue } } recurringContract { nextBillDate } } }",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| {
            v.contract_id.clone().or_else(|| {
                // contractId is nullable; fall back to what identifies the assignment.
                let c = client_account(v)?;
                let k = text_of(v.contract.as_ref().and_then(|c| c.get("contractId")))?;
                Some(tributary_sdk::Record::composite_key(&[c, k, v.start_date.clone().unwrap_or_default()]))
            })
        },
        client: Some(client_account),
        date: None,
    },
    StreamDef {
        name: "technicians",
        root: "getTechnicianList",
        arg_type: "ListInfoInput!",
        list_key: "userList",
        selection: "userId firstName lastName name email contactNumber designation businessFunction team reportingManager role groups",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.user_id.clone(),
        client: None,
        date: None,
    },
    StreamDef {
        name: "worklog_entries",
        root: "getWorklogEntries",
        arg_type: "GetWorklogEntriesInput!",
        list_key: "entries",
        selection: "itemId status serviceItem billable afterHours qty unitPrice billDateTime technician notes workItem",
        shape: Shape::Worklogs,
        sort: None,
        pk: |v| v.item_id.clone(),
        // Filtered by the client of the ticket they were logged on (see read_list).
        client: None,
        date: Some(|v| v.bill_date_time.as_deref()),
    },
    StreamDef {
        name: "alerts",
        root: "getAlertList",
        arg_type: "ListInfoInput!",
        list_key: "alerts",
        selection: "id message createdTime status severity description asset policy resolvedTime occurrenceCount",
        shape: Shape::ListInfo,
        sort: Some("createdTime"),
        pk: |v| v.id.clone(),
        client: Some(alert_client),
        date: Some(|v| v.created_time.as_deref()),
    },
    StreamDef {
        name: "assets",
        root: "getAssetList",
        arg_type: "ListInfoInput!",
        list_key: "assets",
        selection: "assetId name assetClass client site requester primaryMac loggedInUser serialNumber manufacturer model hostName publicIp gateway platform domain status sysUptime lastCommunicatedTime agentVersion platformFamily platformCategory platformVersion patchStatus warrantyExpiryDate purchasedDate customFields lastReportedTime deviceCategory",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.asset_id.clone(),
        client: Some(client_account),
        date: None,
    },
    StreamDef {
        name: "invoices",
        root: "getInvoiceList",
        arg_type: "ListInfoInput!",
        list_key: "invoices",
        selection: "invoiceId displayId client site invoiceDate dueDate statusEnum sentToClient items { itemId billedDate details quantity unitPrice discountRate amount taxable tax serviceItem taxAmount totalAmount } taxes { id tax taxRate taxableAmount taxAmount rate } discountAmount additionalDiscount additionalDiscountRate totalAmount notes paymentDate paymentMethod paymentReference invoicePaymentTerm",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.invoice_id.clone(),
        client: Some(client_account),
        date: Some(|v| v.invoice_date.as_deref()),
    },
];

/// The definition of list stream `name`.
pub fn find(name: &str) -> Option<&'static StreamDef> {
    STREAMS.iter().find(|s| s.name == name)
}

/// The ticket a worklog row was logged on, for TICKET-module rows.
pub fn worklog_ticket(v: &RowView) -> Option<String> {
    let w = v.work_item.as_ref()?;
    if w.get("module").and_then(Value::as_str) != Some("TICKET") {
        return None;
    }
    text_of(w.get("workId"))
}
