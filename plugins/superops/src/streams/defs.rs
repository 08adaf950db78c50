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

/// Reads the client (account id) of a row.
pub type ClientOf = fn(&RowView) -> Option<String>;

/// Reads the business date of a row.
pub type DateOf = fn(&RowView) -> Option<&str>;

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
    /// The fields of one row, in the notation of [`crate::schema`]: the GraphQL
    /// selection with each top-level field's type (`name:type`, `str` when omitted).
    /// Both the query's selection and the stream's JSON Schema come from it.
    pub fields: &'static str,
    /// Argument shape.
    pub shape: Shape,
    /// Attribute full scans sort by (ascending), where the API is known to accept one.
    pub sort: Option<&'static str>,
    /// Primary key field (a top-level ID).
    pub pk: fn(&RowView) -> Option<String>,
    /// The client (account id) a row belongs to, where it is read from and how; `None`
    /// when not client-scoped.
    pub client: Option<(&'static str, ClientOf)>,
    /// The business date the window's start/end apply to, if any: its field and value.
    pub date: Option<(&'static str, DateOf)>,
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

/// The list streams, in catalog order.
pub const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "tickets",
        root: "getTicketList",
        arg_type: "ListInfoInput!",
        list_key: "tickets",
        fields: "ticketId:id displayId subject ticketType requestType source client:json site:json requester:json additionalRequester:json followers:json techGroup:json technician:json status priority impact urgency category subcategory cause subcause resolutionCode sla:json createdTime:time updatedTime:time firstResponseDueTime:time firstResponseTime:time firstResponseViolated:bool resolutionDueTime:time resolutionTime:time resolutionViolated:bool customFields:json worklogTimespent:money",
        shape: Shape::ListInfo,
        sort: Some("createdTime"),
        pk: |v| v.ticket_id.clone(),
        client: Some(("client.accountId", client_account)),
        date: Some(("updatedTime", |v| v.updated_time.as_deref())),
    },
    StreamDef {
        name: "clients",
        root: "getClientList",
        arg_type: "ListInfoInput!",
        list_key: "clients",
        fields: "accountId:id name stage status emailDomains:list accountManager:json primaryContact:json secondaryContact:json hqSite:json technicianGroups:json customFields:json",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.account_id.clone(),
        client: Some(("accountId", |v| v.account_id.clone())),
        date: None,
    },
    StreamDef {
        name: "client_sites",
        root: "getClientSiteList",
        arg_type: "GetClientSiteListInput!",
        list_key: "sites",
        fields: "id:id name client:json hq:bool timezoneCode working24x7:bool businessHour:list { day start end } holidayList:list { id name } line1 line2 line3 city postalCode countryCode stateCode contactNumber",
        shape: Shape::Sites,
        sort: None,
        pk: |v| v.id.clone(),
        client: Some(("client.accountId", client_account)),
        date: None,
    },
    StreamDef {
        name: "client_contracts",
        root: "getClientContractList",
        arg_type: "ListInfoInput",
        list_key: "clientContracts",
        fields: "contractId:id client:json startDate:date endDate:date contractStatus contract:json { contractId name description contractType billableContract { chargeItem frequencyType billableSiteType sellingPrice { model details { value afterHoursValue } } recurringContract { nextBillDate } } }",
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
        client: Some(("client.accountId", client_account)),
        date: None,
    },
    StreamDef {
        name: "technicians",
        root: "getTechnicianList",
        arg_type: "ListInfoInput!",
        list_key: "userList",
        fields: "userId:id firstName lastName name email contactNumber designation:json businessFunction:json team:json reportingManager:json role:json groups:json",
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
        fields: "itemId:id status serviceItem:json billable:bool afterHours:bool qty:money unitPrice:money billDateTime:time technician:json notes workItem:json",
        shape: Shape::Worklogs,
        sort: None,
        pk: |v| v.item_id.clone(),
        // Filtered by the client of the ticket they were logged on (see read_list).
        client: None,
        date: Some(("billDateTime", |v| v.bill_date_time.as_deref())),
    },
    StreamDef {
        name: "alerts",
        root: "getAlertList",
        arg_type: "ListInfoInput!",
        list_key: "alerts",
        fields: "id:id message createdTime:time status severity description asset:json policy:json resolvedTime:time occurrenceCount:int",
        shape: Shape::ListInfo,
        sort: Some("createdTime"),
        pk: |v| v.id.clone(),
        client: Some(("asset.client.accountId", alert_client)),
        date: Some(("createdTime", |v| v.created_time.as_deref())),
    },
    StreamDef {
        name: "assets",
        root: "getAssetList",
        arg_type: "ListInfoInput!",
        list_key: "assets",
        fields: "assetId:id name assetClass:json client:json site:json requester:json primaryMac loggedInUser serialNumber manufacturer model hostName publicIp gateway platform domain status sysUptime lastCommunicatedTime:time agentVersion platformFamily platformCategory platformVersion patchStatus warrantyExpiryDate:date purchasedDate:date customFields:json lastReportedTime:time deviceCategory:json",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.asset_id.clone(),
        client: Some(("client.accountId", client_account)),
        date: None,
    },
    StreamDef {
        name: "invoices",
        root: "getInvoiceList",
        arg_type: "ListInfoInput!",
        list_key: "invoices",
        fields: "invoiceId:id displayId client:json site:json invoiceDate:date dueDate:date statusEnum sentToClient:bool items:list { itemId billedDate details quantity unitPrice discountRate amount taxable tax serviceItem taxAmount totalAmount } taxes:list { id tax taxRate taxableAmount taxAmount rate } discountAmount:money additionalDiscount:money additionalDiscountRate:money totalAmount:money notes paymentDate:date paymentMethod:json paymentReference invoicePaymentTerm:json",
        shape: Shape::ListInfo,
        sort: None,
        pk: |v| v.invoice_id.clone(),
        client: Some(("client.accountId", client_account)),
        date: Some(("invoiceDate", |v| v.invoice_date.as_deref())),
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
