//! The slice of the SuperOps MSP schema the emulator serves: object types with their
//! fields and how each must be selected, and the list queries.

/// How a field is typed, which decides how it may be selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `String`, `ID`, `Int`, `Boolean`, an enum or a list of them: no sub-selection.
    Scalar,
    /// The `JSON` scalar (associations such as `client`): a sub-selection is
    /// `SubSelectionNotAllowed`, exactly as graphql-java reports it.
    Json,
    /// An object type (or a list of one): it must be sub-selected.
    Object(&'static str),
}

use Kind::{Json, Object, Scalar};

/// The fields of object type `name`, in schema order.
pub fn fields(name: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match name {
        "Ticket" => &[
            ("ticketId", Scalar),
            ("displayId", Scalar),
            ("subject", Scalar),
            ("ticketType", Scalar),
            ("requestType", Scalar),
            ("source", Scalar),
            ("client", Json),
            ("site", Json),
            ("requester", Json),
            ("additionalRequester", Json),
            ("followers", Json),
            ("techGroup", Json),
            ("technician", Json),
            ("status", Scalar),
            ("priority", Scalar),
            ("impact", Scalar),
            ("urgency", Scalar),
            ("category", Scalar),
            ("subcategory", Scalar),
            ("cause", Scalar),
            ("subcause", Scalar),
            ("resolutionCode", Scalar),
            ("sla", Json),
            ("createdTime", Scalar),
            ("updatedTime", Scalar),
            ("firstResponseDueTime", Scalar),
            ("firstResponseTime", Scalar),
            ("firstResponseViolated", Scalar),
            ("resolutionDueTime", Scalar),
            ("resolutionTime", Scalar),
            ("resolutionViolated", Scalar),
            ("customFields", Json),
            ("worklogTimespent", Scalar),
        ],
        "Client" => &[
            ("accountId", Scalar),
            ("name", Scalar),
            ("stage", Scalar),
            ("status", Scalar),
            ("emailDomains", Scalar),
            ("accountManager", Json),
            ("primaryContact", Json),
            ("secondaryContact", Json),
            ("hqSite", Json),
            ("technicianGroups", Json),
            ("customFields", Json),
        ],
        "ClientSite" => &[
            ("id", Scalar),
            ("name", Scalar),
            ("client", Json),
            ("hq", Scalar),
            ("timezoneCode", Scalar),
            ("working24x7", Scalar),
            ("businessHour", Object("BusinessHour")),
            ("holidayList", Object("Holiday")),
            ("line1", Scalar),
            ("line2", Scalar),
            ("line3", Scalar),
            ("city", Scalar),
            ("postalCode", Scalar),
            ("countryCode", Scalar),
            ("stateCode", Scalar),
            ("contactNumber", Scalar),
        ],
        "BusinessHour" => &[("day", Scalar), ("start", Scalar), ("end", Scalar)],
        "Holiday" => &[("id", Scalar), ("name", Scalar)],
        "ClientContract" => &[
            ("contractId", Scalar),
            ("client", Json),
            ("contract", Object("Contract")),
            ("startDate", Scalar),
            ("endDate", Scalar),
            ("contractStatus", Scalar),
        ],
        "Contract" => &[
            ("contractId", Scalar),
            ("name", Scalar),
            ("description", Scalar),
            ("contractType", Scalar),
            ("billableContract", Object("BillableContract")),
        ],
        "BillableContract" => &[
            ("chargeItem", Json),
            ("frequencyType", Scalar),
            ("billableSiteType", Scalar),
            ("sellingPrice", Object("SellingPrice")),
            ("recurringContract", Object("RecurringContract")),
            ("blockItemsInfo", Object("BlockItemsInfo")),
        ],
        "SellingPrice" => &[
            ("model", Scalar),
            ("details", Object("SellingPriceDetails")),
        ],
        "SellingPriceDetails" => &[("value", Scalar), ("afterHoursValue", Scalar)],
        "RecurringContract" => &[("nextBillDate", Scalar)],
        "BlockItemsInfo" => &[("blockItemId", Scalar), ("balance", Scalar)],
        "Technician" => &[
            ("userId", Scalar),
            ("firstName", Scalar),
            ("lastName", Scalar),
            ("name", Scalar),
            ("email", Scalar),
            ("contactNumber", Scalar),
            ("emailSignature", Scalar),
            ("designation", Json),
            ("businessFunction", Json),
            ("team", Json),
            ("reportingManager", Json),
            ("role", Json),
            ("groups", Json),
        ],
        "WorklogEntry" => &[
            ("itemId", Scalar),
            ("status", Scalar),
            ("serviceItem", Json),
            ("billable", Scalar),
            ("afterHours", Scalar),
            ("qty", Scalar),
            ("unitPrice", Scalar),
            ("billDateTime", Scalar),
            ("technician", Json),
            ("notes", Scalar),
            ("workItem", Json),
        ],
        "Alert" => &[
            ("id", Scalar),
            ("message", Scalar),
            ("createdTime", Scalar),
            ("status", Scalar),
            ("severity", Scalar),
            ("description", Scalar),
            ("asset", Json),
            ("policy", Json),
            ("resolvedTime", Scalar),
            ("occurrenceCount", Scalar),
        ],
        "Asset" => &[
            ("assetId", Scalar),
            ("name", Scalar),
            ("assetClass", Json),
            ("client", Json),
            ("site", Json),
            ("requester", Json),
            ("primaryMac", Scalar),
            ("loggedInUser", Scalar),
            ("serialNumber", Scalar),
            ("manufacturer", Scalar),
            ("model", Scalar),
            ("hostName", Scalar),
            ("publicIp", Scalar),
            ("gateway", Scalar),
            ("platform", Scalar),
            ("domain", Scalar),
            ("status", Scalar),
            ("sysUptime", Scalar),
            ("lastCommunicatedTime", Scalar),
            ("agentVersion", Scalar),
            ("platformFamily", Scalar),
            ("platformCategory", Scalar),
            ("platformVersion", Scalar),
            ("patchStatus", Scalar),
            ("warrantyExpiryDate", Scalar),
            ("purchasedDate", Scalar),
            ("customFields", Json),
            ("lastReportedTime", Scalar),
            ("deviceCategory", Json),
        ],
        "Invoice" => &[
            ("invoiceId", Scalar),
            ("displayId", Scalar),
            ("client", Json),
            ("site", Json),
            ("invoiceDate", Scalar),
            ("dueDate", Scalar),
            ("statusEnum", Scalar),
            ("sentToClient", Scalar),
            ("items", Object("InvoiceItem")),
            ("taxes", Object("InvoiceTax")),
            ("discountAmount", Scalar),
            ("additionalDiscount", Scalar),
            ("additionalDiscountRate", Scalar),
            ("totalAmount", Scalar),
            ("notes", Scalar),
            ("paymentDate", Scalar),
            ("paymentMethod", Json),
            ("paymentReference", Scalar),
            ("invoicePaymentTerm", Json),
        ],
        "InvoiceItem" => &[
            ("itemId", Scalar),
            ("billedDate", Scalar),
            ("details", Scalar),
            ("quantity", Scalar),
            ("unitPrice", Scalar),
            ("discountRate", Scalar),
            ("amount", Scalar),
            ("taxable", Scalar),
            ("tax", Json),
            ("serviceItem", Json),
            ("taxAmount", Scalar),
            ("totalAmount", Scalar),
        ],
        "InvoiceTax" => &[
            ("id", Scalar),
            ("tax", Json),
            ("taxRate", Scalar),
            ("taxableAmount", Scalar),
            ("taxAmount", Scalar),
            ("rate", Scalar),
        ],
        "ListInfo" => &[
            ("page", Scalar),
            ("pageSize", Scalar),
            ("sort", Object("Sort")),
            ("condition", Json),
            ("hasMore", Scalar),
            ("totalCount", Scalar),
        ],
        "Sort" => &[("attribute", Scalar), ("order", Scalar)],
        _ => return None,
    })
}

/// The entity collections of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// `getTicketList`.
    Tickets,
    /// `getClientList`.
    Clients,
    /// `getClientSiteList`.
    Sites,
    /// `getClientContractList`.
    Contracts,
    /// `getTechnicianList`.
    Technicians,
    /// `getWorklogEntries` (both modules; `workItem.module` tells them apart).
    Worklogs,
    /// `getAlertList`.
    Alerts,
    /// `getAssetList`.
    Assets,
    /// `getInvoiceList`.
    Invoices,
}

impl Collection {
    /// The top-level field that identifies a row (the primary key the API documents).
    pub fn key_field(self) -> &'static str {
        match self {
            Collection::Tickets => "ticketId",
            Collection::Clients => "accountId",
            Collection::Sites | Collection::Alerts => "id",
            Collection::Contracts => "contractId",
            Collection::Technicians => "userId",
            Collection::Worklogs => "itemId",
            Collection::Assets => "assetId",
            Collection::Invoices => "invoiceId",
        }
    }
}

/// Where the `ListInfoInput` sits in a query's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// The argument is the `ListInfoInput` itself.
    ListInfo,
    /// `{listInfo, clientId?}`.
    Sites,
    /// `{module, listInfo}`.
    Worklogs,
}

/// A list query.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery {
    /// Root field name.
    pub name: &'static str,
    /// Argument type names it accepts (`!` optional only where the schema says so).
    pub arg_types: &'static [&'static str],
    /// Key of the list in the result.
    pub list_key: &'static str,
    /// Object type of the rows.
    pub row_type: &'static str,
    /// Data it serves.
    pub collection: Collection,
    /// How the argument is shaped.
    pub shape: InputShape,
}

/// Every list query the emulator serves.
pub const LIST_QUERIES: &[ListQuery] = &[
    ListQuery {
        name: "getTicketList",
        arg_types: &["ListInfoInput!"],
        list_key: "tickets",
        row_type: "Ticket",
        collection: Collection::Tickets,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getClientList",
        arg_types: &["ListInfoInput!"],
        list_key: "clients",
        row_type: "Client",
        collection: Collection::Clients,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getClientSiteList",
        arg_types: &["GetClientSiteListInput!"],
        list_key: "sites",
        row_type: "ClientSite",
        collection: Collection::Sites,
        shape: InputShape::Sites,
    },
    ListQuery {
        name: "getClientContractList",
        arg_types: &["ListInfoInput", "ListInfoInput!"],
        list_key: "clientContracts",
        row_type: "ClientContract",
        collection: Collection::Contracts,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getTechnicianList",
        arg_types: &["ListInfoInput!"],
        list_key: "userList",
        row_type: "Technician",
        collection: Collection::Technicians,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getWorklogEntries",
        arg_types: &["GetWorklogEntriesInput!"],
        list_key: "entries",
        row_type: "WorklogEntry",
        collection: Collection::Worklogs,
        shape: InputShape::Worklogs,
    },
    ListQuery {
        name: "getAlertList",
        arg_types: &["ListInfoInput!"],
        list_key: "alerts",
        row_type: "Alert",
        collection: Collection::Alerts,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getAssetList",
        arg_types: &["ListInfoInput!"],
        list_key: "assets",
        row_type: "Asset",
        collection: Collection::Assets,
        shape: InputShape::ListInfo,
    },
    ListQuery {
        name: "getInvoiceList",
        arg_types: &["ListInfoInput!"],
        list_key: "invoices",
        row_type: "Invoice",
        collection: Collection::Invoices,
        shape: InputShape::ListInfo,
    },
];

/// The list query named `name`.
pub fn list_query(name: &str) -> Option<&'static ListQuery> {
    LIST_QUERIES.iter().find(|q| q.name == name)
}
