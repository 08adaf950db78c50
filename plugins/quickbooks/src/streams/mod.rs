//! The streams: twelve entity streams ([`entity`]: CDC from the last complete read, a
//! reconciliation pass when CDC cannot answer, the query API for narrowed reads), the
//! TransactionList report in date chunks ([`report`]) and deletions from CDC
//! ([`deleted`]).

mod cdc;
pub mod deleted;
pub mod entity;
pub mod position;
mod reconcile;
pub mod report;
mod seek;
pub mod state;

use tributary_sdk::toolkit::{StreamRun, Streams};
use tributary_sdk::{Catalog, Emitter, StreamDescriptor, Window};

use crate::client::Client;
use crate::config::{Config, WindowField};
use crate::error::Result;
use crate::schema;

/// How a stream's rows relate to a client id (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientField {
    /// Not client-scoped: the filter does not apply.
    None,
    /// `CustomerRef`.
    CustomerRef,
    /// The customer itself (`Id`).
    Id,
}

/// An entity stream.
#[derive(Debug, Clone, Copy)]
pub struct EntityStream {
    /// Stream name.
    pub name: &'static str,
    /// QuickBooks entity.
    pub entity: &'static str,
    /// Name-list entity (has `Active`; deletes arrive as `Active: false` updates).
    pub list: bool,
    /// Client filter field.
    pub client: ClientField,
}

/// Every entity stream.
pub const ENTITY_STREAMS: &[EntityStream] = &[
    EntityStream {
        name: "invoices",
        entity: "Invoice",
        list: false,
        client: ClientField::CustomerRef,
    },
    EntityStream {
        name: "payments",
        entity: "Payment",
        list: false,
        client: ClientField::CustomerRef,
    },
    EntityStream {
        name: "purchases",
        entity: "Purchase",
        list: false,
        client: ClientField::None,
    },
    EntityStream {
        name: "bills",
        entity: "Bill",
        list: false,
        client: ClientField::None,
    },
    EntityStream {
        name: "deposits",
        entity: "Deposit",
        list: false,
        client: ClientField::None,
    },
    EntityStream {
        name: "customers",
        entity: "Customer",
        list: true,
        client: ClientField::Id,
    },
    EntityStream {
        name: "vendors",
        entity: "Vendor",
        list: true,
        client: ClientField::None,
    },
    EntityStream {
        name: "accounts",
        entity: "Account",
        list: true,
        client: ClientField::None,
    },
    EntityStream {
        name: "items",
        entity: "Item",
        list: true,
        client: ClientField::None,
    },
    EntityStream {
        name: "credit_memos",
        entity: "CreditMemo",
        list: false,
        client: ClientField::CustomerRef,
    },
    EntityStream {
        name: "sales_receipts",
        entity: "SalesReceipt",
        list: false,
        client: ClientField::CustomerRef,
    },
    EntityStream {
        name: "journal_entries",
        entity: "JournalEntry",
        list: false,
        client: ClientField::None,
    },
];

/// The report stream.
pub const TRANSACTION_LIST: &str = "transaction_list";
/// The CDC deletions stream.
pub const DELETED_OBJECTS: &str = "deleted_objects";

/// What one stream name resolves to.
#[derive(Debug, Clone, Copy)]
pub enum StreamKind {
    /// An entity stream.
    Entity(EntityStream),
    /// `transaction_list`.
    Report,
    /// `deleted_objects`.
    Deleted,
}

/// Every stream, declared once: `discover`'s catalog and `read`'s lookup both come from
/// here. `window` says which field the date window filters (a config setting).
pub fn declared(window: WindowField) -> Streams<StreamKind> {
    let updated = "MetaData.LastUpdatedTime";
    let mut streams = Streams::new("quickbooks");
    for s in ENTITY_STREAMS {
        let descriptor =
            StreamDescriptor::incremental(s.name, schema::for_stream(s.name), &["Id"], updated)
                .window_field(Some(match window {
                    WindowField::TxnDate if !s.list => "TxnDate",
                    _ => updated,
                }));
        let descriptor = match s.client {
            ClientField::None => descriptor,
            ClientField::CustomerRef => descriptor.client_field("CustomerRef.value"),
            ClientField::Id => descriptor.client_field("Id"),
        };
        streams = streams.with(descriptor, StreamKind::Entity(*s));
    }
    let report = StreamDescriptor::incremental(
        TRANSACTION_LIST,
        schema::for_stream(TRANSACTION_LIST),
        &["txn_type", "txn_type_id"],
        "tx_date",
    )
    .client_field("name_id");
    let deleted = StreamDescriptor::incremental(
        DELETED_OBJECTS,
        schema::for_stream(DELETED_OBJECTS),
        &["entity", "Id"],
        updated,
    );
    streams
        .with(report, StreamKind::Report)
        .with(deleted, StreamKind::Deleted)
}

/// The catalog `discover` returns.
pub fn catalog(window: WindowField) -> Catalog {
    declared(window).catalog()
}

/// What every stream reader gets.
#[derive(Debug)]
pub struct Ctx {
    /// The API client (shared budget and tokens).
    pub client: Client,
    /// The source config.
    pub config: Config,
    /// Where output goes.
    pub out: Emitter,
    /// The manifest's window.
    pub window: Window,
}

/// Reads one stream from its saved state (None: from the beginning).
pub async fn read(ctx: &std::sync::Arc<Ctx>, run: StreamRun<StreamKind>) -> Result<()> {
    let StreamRun {
        name,
        definition,
        state,
        limit,
        ..
    } = run;
    match definition {
        StreamKind::Entity(def) => entity::read(ctx, def, state, &limit).await,
        StreamKind::Report => report::read(ctx, &name, state, &limit).await,
        StreamKind::Deleted => deleted::read(ctx, &name, state, &limit).await,
    }
}
