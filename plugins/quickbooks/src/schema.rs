//! JSON Schemas of the streams. Objects pass through untouched and QuickBooks adds fields
//! over time, so schemas list the well-known fields and allow any others.

use serde_json::{json, Map, Value};

fn s() -> Value {
    json!({"type": ["string", "null"]})
}
fn n() -> Value {
    json!({"type": ["number", "null"]})
}
fn b() -> Value {
    json!({"type": ["boolean", "null"]})
}
fn date() -> Value {
    json!({"type": ["string", "null"], "format": "date"})
}
fn reference() -> Value {
    json!({"type": ["object", "null"], "properties": {"value": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"}}})
}
fn array() -> Value {
    json!({"type": ["array", "null"], "items": {"type": "object"}})
}
fn object() -> Value {
    json!({"type": ["object", "null"]})
}

fn entity_schema(extra: &[(&str, Value)]) -> Value {
    let mut props = Map::new();
    props.insert("Id".into(), json!({"type": "string"}));
    props.insert("SyncToken".into(), s());
    props.insert("domain".into(), s());
    props.insert("sparse".into(), b());
    props.insert(
        "MetaData".into(),
        json!({"type": "object", "properties": {
            "CreateTime": {"type": "string", "format": "date-time"},
            "LastUpdatedTime": {"type": "string", "format": "date-time"}}}),
    );
    for (k, v) in extra {
        props.insert((*k).to_string(), v.clone());
    }
    json!({"type": "object", "required": ["Id"], "additionalProperties": true, "properties": props})
}

fn transaction(extra: &[(&str, Value)]) -> Value {
    let mut fields = vec![
        ("TxnDate", date()),
        ("DocNumber", s()),
        ("CurrencyRef", reference()),
        ("Line", array()),
        ("LinkedTxn", array()),
        ("TotalAmt", n()),
        ("PrivateNote", s()),
        ("CustomField", array()),
    ];
    fields.extend(extra.iter().cloned());
    entity_schema(&fields)
}

/// The schema of stream `name`.
pub fn for_stream(name: &str) -> Value {
    let sales = || {
        vec![
            ("CustomerRef", reference()),
            ("Balance", n()),
            ("TxnTaxDetail", object()),
            ("BillAddr", object()),
            ("ShipAddr", object()),
            ("BillEmail", object()),
            ("CustomerMemo", object()),
        ]
    };
    match name {
        "invoices" => {
            let mut f = sales();
            f.extend([
                ("DueDate", date()),
                ("SalesTermRef", reference()),
                ("EmailStatus", s()),
                ("PrintStatus", s()),
            ]);
            transaction(&f)
        }
        "credit_memos" => {
            let mut f = sales();
            f.push(("RemainingCredit", n()));
            transaction(&f)
        }
        "sales_receipts" => {
            let mut f = sales();
            f.extend([
                ("PaymentMethodRef", reference()),
                ("DepositToAccountRef", reference()),
            ]);
            transaction(&f)
        }
        "payments" => transaction(&[
            ("CustomerRef", reference()),
            ("DepositToAccountRef", reference()),
            ("UnappliedAmt", n()),
            ("ProcessPayment", b()),
        ]),
        "purchases" => transaction(&[
            ("AccountRef", reference()),
            ("PaymentType", s()),
            ("EntityRef", reference()),
            ("Credit", b()),
            ("PurchaseEx", object()),
        ]),
        "bills" => transaction(&[
            ("VendorRef", reference()),
            ("APAccountRef", reference()),
            ("DueDate", date()),
            ("Balance", n()),
            ("SalesTermRef", reference()),
        ]),
        "deposits" => transaction(&[("DepositToAccountRef", reference()), ("CashBack", object())]),
        "journal_entries" => transaction(&[("Adjustment", b())]),
        "customers" => entity_schema(&[
            ("DisplayName", s()),
            ("CompanyName", s()),
            ("GivenName", s()),
            ("FamilyName", s()),
            ("FullyQualifiedName", s()),
            ("PrintOnCheckName", s()),
            ("Active", b()),
            ("Job", b()),
            ("ParentRef", reference()),
            ("Level", n()),
            ("BillWithParent", b()),
            ("Balance", n()),
            ("BalanceWithJobs", n()),
            ("SalesTermRef", reference()),
            ("Taxable", b()),
            ("CurrencyRef", reference()),
            ("PreferredDeliveryMethod", s()),
            ("BillAddr", object()),
            ("ShipAddr", object()),
            ("PrimaryEmailAddr", object()),
            ("PrimaryPhone", object()),
        ]),
        "vendors" => entity_schema(&[
            ("DisplayName", s()),
            ("CompanyName", s()),
            ("Active", b()),
            ("Balance", n()),
            ("Vendor1099", b()),
            ("BillAddr", object()),
            ("CurrencyRef", reference()),
        ]),
        "accounts" => entity_schema(&[
            ("Name", s()),
            ("FullyQualifiedName", s()),
            ("Active", b()),
            ("AccountType", s()),
            ("AccountSubType", s()),
            ("Classification", s()),
            ("CurrentBalance", n()),
            ("SubAccount", b()),
            ("ParentRef", reference()),
        ]),
        "items" => entity_schema(&[
            ("Name", s()),
            ("FullyQualifiedName", s()),
            ("Active", b()),
            ("Type", s()),
            ("UnitPrice", n()),
            ("IncomeAccountRef", reference()),
            ("QtyOnHand", n()),
            ("Taxable", b()),
        ]),
        "transaction_list" => {
            json!({"type": "object", "additionalProperties": true, "properties": {
            "tx_date": date(), "txn_type": s(), "txn_type_id": s(), "doc_num": s(), "is_no_post": s(), "name": s(), "name_id": s(),
            "dept_name": s(), "memo": s(), "account_name": s(), "account_name_id": s(), "other_account": s(),
            "subt_nat_home_amount": {"type": ["string", "null"], "description": "amount as QuickBooks sends it, a decimal string"},
            "section": s()}})
        }
        "deleted_objects" => {
            json!({"type": "object", "required": ["entity", "Id"], "additionalProperties": true, "properties": {
            "entity": {"type": "string"}, "Id": {"type": "string"}, "status": s(), "domain": s(),
            "MetaData": {"type": "object", "properties": {"LastUpdatedTime": {"type": "string", "format": "date-time"}}}}})
        }
        _ => entity_schema(&[]),
    }
}
