//! The emulator's company: deterministic generated objects, kept as JSON, plus the
//! mutations tests use to exercise incremental sync and CDC.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::clock::Clock;
use super::config::{Counts, EmulatorConfig};
use super::webhooks::Dispatcher;
use crate::mutate::{Change, Operation};

/// One kind of object the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityKind {
    /// The QuickBooks entity name (`Invoice`).
    pub name: &'static str,
    /// A name-list entity with an `Active` flag: deletes make it inactive, and queries
    /// hide inactive rows unless they filter on `Active`.
    pub list: bool,
    /// Label in the TransactionList report (`None` for list entities).
    pub report_type: Option<&'static str>,
}

/// Every entity the emulator knows, in generation order.
pub const ENTITIES: &[EntityKind] = &[
    EntityKind {
        name: "Account",
        list: true,
        report_type: None,
    },
    EntityKind {
        name: "Item",
        list: true,
        report_type: None,
    },
    EntityKind {
        name: "Customer",
        list: true,
        report_type: None,
    },
    EntityKind {
        name: "Vendor",
        list: true,
        report_type: None,
    },
    EntityKind {
        name: "Invoice",
        list: false,
        report_type: Some("Invoice"),
    },
    EntityKind {
        name: "Payment",
        list: false,
        report_type: Some("Payment"),
    },
    EntityKind {
        name: "Purchase",
        list: false,
        report_type: Some("Expense"),
    },
    EntityKind {
        name: "Bill",
        list: false,
        report_type: Some("Bill"),
    },
    EntityKind {
        name: "Deposit",
        list: false,
        report_type: Some("Deposit"),
    },
    EntityKind {
        name: "CreditMemo",
        list: false,
        report_type: Some("Credit Memo"),
    },
    EntityKind {
        name: "SalesReceipt",
        list: false,
        report_type: Some("Sales Receipt"),
    },
    EntityKind {
        name: "JournalEntry",
        list: false,
        report_type: Some("Journal Entry"),
    },
];

/// Entities CDC refuses (documented exclusions) and that the emulator does not serve.
pub const CDC_EXCLUDED: &[&str] = &[
    "JournalCode",
    "TaxAgency",
    "TimeActivity",
    "TaxCode",
    "TaxRate",
];

/// Looks up an entity by its exact (case-sensitive) name.
pub fn entity(name: &str) -> Option<EntityKind> {
    ENTITIES.iter().copied().find(|e| e.name == name)
}

/// Company-local offset used in every timestamp (Pacific standard time, like the samples).
pub fn company_offset() -> FixedOffset {
    FixedOffset::west_opt(8 * 3600)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

/// `2023-02-18T13:16:17-08:00`: whole seconds, company-local, with a colon in the offset.
pub fn format_ts(epoch_secs: i64) -> String {
    let utc = Utc
        .timestamp_opt(epoch_secs, 0)
        .single()
        .unwrap_or_default();
    utc.with_timezone(&company_offset())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The company-local calendar date of an instant.
pub fn local_date(epoch_secs: i64) -> NaiveDate {
    let utc = Utc
        .timestamp_opt(epoch_secs, 0)
        .single()
        .unwrap_or_default();
    utc.with_timezone(&company_offset()).date_naive()
}

/// Parses every timestamp form QuickBooks accepts in filters: RFC 3339, `-0700` offsets,
/// no offset (taken as company-local), and bare dates (company-local midnight).
pub fn parse_ts(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, f) {
            return Some(t.timestamp());
        }
    }
    let off = company_offset();
    if let Ok(n) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return off.from_local_datetime(&n).single().map(|t| t.timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let n = d.and_hms_opt(0, 0, 0)?;
        return off.from_local_datetime(&n).single().map(|t| t.timestamp());
    }
    None
}

/// A live object, kept as its JSON text only (a tree of values costs about ten times
/// the text, and a company of a million invoices has to fit), plus the fields that
/// filters read on every request.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Numeric id (the JSON carries it as a string).
    pub id: u64,
    /// `MetaData.LastUpdatedTime` as epoch seconds, kept for fast filtering.
    pub ts: i64,
    /// The object serialized, so pages are built by concatenation.
    pub text: String,
    /// `TxnDate`, for the report's date filter.
    pub txn_date: Option<NaiveDate>,
}

impl Obj {
    fn new(id: u64, ts: i64, value: &Value) -> Self {
        Obj {
            id,
            ts,
            text: value.to_string(),
            txn_date: value
                .get("TxnDate")
                .and_then(Value::as_str)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        }
    }

    /// The object as a value, parsed from its text.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Changes the object: `f` edits its value, which is then serialized again.
    fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let mut v = self.value();
        f(&mut v);
        *self = Obj::new(self.id, self.ts, &v);
    }
}

/// A hard-deleted transaction, as CDC reports it.
#[derive(Debug, Clone)]
pub struct Tombstone {
    /// Entity name.
    pub entity: &'static str,
    /// Id of the deleted object.
    pub id: u64,
    /// Deletion time, epoch seconds.
    pub ts: i64,
    /// The `status: "Deleted"` stub, serialized.
    pub text: String,
}

/// All objects of the emulated company.
#[derive(Debug)]
pub struct Store {
    /// Live objects per entity, by id.
    pub tables: BTreeMap<&'static str, BTreeMap<u64, Obj>>,
    /// Deleted transactions, in deletion order.
    pub tombstones: Vec<Tombstone>,
    /// Server time, shared with the HTTP side.
    pub clock: Arc<Clock>,
    next_id: u64,
    rng: StdRng,
    mutations: u64,
    /// Per entity, (LastUpdatedTime, id) of every live object in order; rebuilt lazily
    /// after a change. Incremental queries binary-search it instead of scanning.
    ts_index: BTreeMap<&'static str, Vec<(i64, u64)>>,
    /// [`Store::refs`], cached.
    refs: Option<Refs>,
    /// Told of every change after generation, to send webhooks (`None`: nobody listens).
    pub webhooks: Option<Arc<Dispatcher>>,
}

fn money(cents: i64) -> Value {
    json!(cents as f64 / 100.0)
}

fn reference(id: u64, name: &str) -> Value {
    json!({"value": id.to_string(), "name": name})
}

fn meta(create: i64, update: i64) -> Value {
    json!({"CreateTime": format_ts(create), "LastUpdatedTime": format_ts(update)})
}

const FIRST: &[&str] = &[
    "Amy",
    "Bill",
    "Cool",
    "Dukes",
    "Freeman",
    "Geeta",
    "Jeff",
    "Kookies",
    "Mark",
    "Pye",
    "Rondonuwu",
    "Shara",
    "Sushi",
    "Travis",
    "Wedding",
];
const LAST: &[&str] = &[
    "Bird Sanctuary",
    "Windsurf Shop",
    "Cars",
    "Basketball Camp",
    "Sporting Goods",
    "Kalapatapu",
    "Chin",
    "by Kathy",
    "Cho",
    "Cakes",
    "Fruit and Vegi",
    "Barnett",
    "by Katsuyuki",
    "Waldron",
    "Planning",
];
const VENDORS: &[&str] = &[
    "Norton Lumber and Building Materials",
    "Bob's Burger Joint",
    "Hicks Hardware",
    "PG&E",
    "Tania's Nursery",
    "Robertson & Associates",
    "Cal Telephone",
    "Lee Advertising",
];
const ACCOUNTS: &[(&str, &str, &str)] = &[
    ("Checking", "Bank", "Asset"),
    ("Savings", "Bank", "Asset"),
    ("Accounts Receivable (A/R)", "Accounts Receivable", "Asset"),
    ("Undeposited Funds", "Other Current Asset", "Asset"),
    ("Accounts Payable (A/P)", "Accounts Payable", "Liability"),
    ("Mastercard", "Credit Card", "Liability"),
    ("Sales of Product Income", "Income", "Revenue"),
    ("Services", "Income", "Revenue"),
    ("Meals and Entertainment", "Expense", "Expense"),
    (
        "Job Expenses:Job Materials:Decks and Patios",
        "Expense",
        "Expense",
    ),
    ("Utilities", "Expense", "Expense"),
    ("Advertising", "Expense", "Expense"),
];
const ITEMS: &[(&str, f64)] = &[
    ("Rock Fountain", 275.0),
    ("Pump", 12.75),
    ("Concrete", 9.5),
    ("Design", 75.0),
    ("Gardening", 30.0),
    ("Installation", 50.0),
    ("Lighting", 2.5),
    ("Maintenance & Repair", 40.0),
    ("Sprinkler Heads", 2.0),
    ("Trimming", 35.0),
];

/// Ids of the objects a transaction may refer to, collected while generating.
#[derive(Debug, Default, Clone)]
struct Refs {
    customers: Vec<(u64, String)>,
    vendors: Vec<(u64, String)>,
    accounts: Vec<(u64, String)>,
    items: Vec<(u64, String, f64)>,
}

impl Store {
    /// Generates the company described by `config`, with timestamps relative to its
    /// anchor (now, unless it names one).
    pub fn generate(config: &EmulatorConfig, clock: Arc<Clock>) -> Store {
        let now = config.anchor.map_or_else(|| clock.now(), |a| a.timestamp());
        let mut store = Store {
            tables: ENTITIES.iter().map(|e| (e.name, BTreeMap::new())).collect(),
            tombstones: Vec::new(),
            clock,
            next_id: 1,
            rng: StdRng::seed_from_u64(config.seed),
            mutations: 0,
            ts_index: BTreeMap::new(),
            refs: None,
            webhooks: None,
        };
        let start = now - config.history_days.max(2) * 86_400;
        let end = now - 86_400;
        let c: &Counts = &config.counts;
        // The roster's customers first, with their own ids, spread like the others.
        let n = config.roster.len();
        for (i, (id, name)) in config.roster.iter().enumerate() {
            let ts = start + (end - start) * i as i64 / n.max(1) as i64;
            store.insert_customer(*id, name, ts);
        }
        let plan: [(&'static str, usize); 12] = [
            ("Account", c.accounts),
            ("Item", c.items),
            ("Customer", c.customers),
            ("Vendor", c.vendors),
            ("Invoice", c.invoices),
            ("Payment", c.payments),
            ("Purchase", c.purchases),
            ("Bill", c.bills),
            ("Deposit", c.deposits),
            ("CreditMemo", c.credit_memos),
            ("SalesReceipt", c.sales_receipts),
            ("JournalEntry", c.journal_entries),
        ];
        for (name, n) in plan {
            // Objects come in groups of three sharing one LastUpdatedTime second, so the
            // "many rows on one timestamp" case is there from the start.
            // The newest group lands on `end`, about a day ago: inside the CDC window.
            let groups = n.div_ceil(3).max(1) as i64;
            let step = ((end - start) / (groups - 1).max(1)).max(1);
            for i in 0..n {
                let ts = start + (i as i64 / 3) * step;
                store.insert_generated(name, ts);
            }
        }
        store
    }

    /// The list objects transactions refer to, collected once and kept until a list
    /// object is added.
    fn refs(&mut self) -> Refs {
        if let Some(r) = &self.refs {
            return r.clone();
        }
        let mut refs = Refs::default();
        let name_of = |o: &Obj, key: &str| {
            o.value()
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        for o in self
            .tables
            .get("Customer")
            .into_iter()
            .flat_map(|t| t.values())
        {
            refs.customers.push((o.id, name_of(o, "DisplayName")));
        }
        for o in self
            .tables
            .get("Vendor")
            .into_iter()
            .flat_map(|t| t.values())
        {
            refs.vendors.push((o.id, name_of(o, "DisplayName")));
        }
        for o in self
            .tables
            .get("Account")
            .into_iter()
            .flat_map(|t| t.values())
        {
            refs.accounts.push((o.id, name_of(o, "FullyQualifiedName")));
        }
        for o in self.tables.get("Item").into_iter().flat_map(|t| t.values()) {
            let price = o
                .value()
                .get("UnitPrice")
                .and_then(Value::as_f64)
                .unwrap_or(10.0);
            refs.items.push((o.id, name_of(o, "Name"), price));
        }
        self.refs = Some(refs.clone());
        refs
    }

    fn insert_generated(&mut self, entity: &'static str, ts: i64) -> u64 {
        self.ts_index.remove(entity);
        let id = self.next_id;
        self.next_id += 1;
        let refs = self.refs();
        let value = self.build(entity, id, ts, &refs);
        if entity_kind(entity).is_some_and(|k| k.list) {
            self.refs = None;
        }
        if let Some(t) = self.tables.get_mut(entity) {
            t.insert(id, Obj::new(id, ts, &value));
        }
        id
    }

    /// Inserts a customer with a given id and name (the roster's); later ids continue
    /// after the largest one.
    fn insert_customer(&mut self, id: u64, name: &str, ts: i64) {
        let next = self.next_id;
        self.next_id = id;
        self.insert_generated("Customer", ts);
        self.next_id = next.max(id + 1);
        if let Some(o) = self.tables.get_mut("Customer").and_then(|t| t.get_mut(&id)) {
            o.edit(|v| {
                for key in [
                    "CompanyName",
                    "DisplayName",
                    "FullyQualifiedName",
                    "PrintOnCheckName",
                ] {
                    v[key] = json!(name);
                }
                // A roster client is its own customer, never a job of another.
                if let Some(m) = v.as_object_mut() {
                    for key in ["ParentRef", "Level"] {
                        m.remove(key);
                    }
                }
                v["Job"] = json!(false);
                v["Active"] = json!(true);
            });
        }
        self.refs = None;
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            let i = self.rng.gen_range(0..v.len());
            v.get(i)
        }
    }

    fn customer_ref(&mut self, refs: &Refs) -> Value {
        match self.pick(&refs.customers) {
            Some((id, name)) => reference(*id, name),
            None => json!({"value": "1", "name": "Amy's Bird Sanctuary"}),
        }
    }

    fn vendor_ref(&mut self, refs: &Refs) -> Value {
        match self.pick(&refs.vendors) {
            Some((id, name)) => reference(*id, name),
            None => json!({"value": "46", "name": "Norton Lumber and Building Materials"}),
        }
    }

    fn account_ref(&mut self, refs: &Refs) -> Value {
        match self.pick(&refs.accounts) {
            Some((id, name)) => reference(*id, name),
            None => json!({"value": "35", "name": "Checking"}),
        }
    }

    fn address(&mut self, id: u64) -> Value {
        let mut a = json!({"Id": id.to_string(), "Line1": format!("{} Easy St.", 100 + id % 900),
            "City": "Middlefield", "CountrySubDivisionCode": "CA", "PostalCode": "94482"});
        // A real quirk: geocoding that failed leaves the strings "INVALID".
        if id.is_multiple_of(4) {
            a["Lat"] = json!("INVALID");
            a["Long"] = json!("INVALID");
        } else {
            a["Lat"] = json!("37.4031672");
            a["Long"] = json!("-122.0642815");
        }
        a
    }

    fn sales_lines(&mut self, refs: &Refs, linked: Option<u64>) -> (Vec<Value>, i64) {
        let n: u32 = self.rng.gen_range(1..=4);
        let mut lines = Vec::new();
        let mut total = 0i64;
        for i in 0..n {
            let (item_id, item_name, price) =
                self.pick(&refs.items)
                    .cloned()
                    .unwrap_or((5, "Rock Fountain".to_string(), 275.0));
            let qty = self.rng.gen_range(1..=6) as i64;
            let price_cents = (price * 100.0).round() as i64;
            let amount = price_cents * qty;
            total += amount;
            let mut line = json!({"Id": (i + 1).to_string(), "LineNum": i + 1, "Description": item_name,
                "Amount": money(amount), "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": reference(item_id, &item_name), "UnitPrice": price,
                    "Qty": qty, "TaxCodeRef": {"value": if i.is_multiple_of(2) { "TAX" } else { "NON" }}}});
            if let Some(t) = linked {
                line["LinkedTxn"] = json!([{"TxnId": t.to_string(), "TxnType": "Estimate"}]);
            }
            lines.push(line);
        }
        if self.rng.gen_bool(0.3) {
            let discount = total / 10;
            lines.push(
                json!({"Amount": money(discount), "DetailType": "DiscountLineDetail",
                "DiscountLineDetail": {"PercentBased": true, "DiscountPercent": 10}}),
            );
            total -= discount;
        }
        lines.push(json!({"Amount": money(total), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}));
        (lines, total)
    }

    fn jaxb(name: &str, value: &str) -> Value {
        json!({"name": "{http://schema.intuit.com/finance/v3}NameValue",
            "declaredType": "com.intuit.schema.finance.v3.NameValue",
            "scope": "javax.xml.bind.JAXBElement$GlobalScope",
            "value": {"Name": name, "Value": value},
            "nil": false, "globalScope": true, "typeSubstituted": false})
    }

    fn build(&mut self, entity: &str, id: u64, ts: i64, refs: &Refs) -> Value {
        let created = ts - self.rng.gen_range(0..86_400 * 3);
        let txn_date = local_date(ts - self.rng.gen_range(0..86_400 * 5))
            .format("%Y-%m-%d")
            .to_string();
        let usd = json!({"value": "USD", "name": "United States Dollar"});
        let mut v = match entity {
            "Account" => {
                let (name, ty, class) = ACCOUNTS[(id as usize) % ACCOUNTS.len()];
                let name = if id as usize >= ACCOUNTS.len() {
                    format!("{name} {id}")
                } else {
                    name.to_string()
                };
                json!({"Name": name, "SubAccount": name.contains(':'), "FullyQualifiedName": name,
                    "Active": !id.is_multiple_of(9), "Classification": class, "AccountType": ty,
                    "AccountSubType": ty.replace(' ', ""), "CurrentBalance": money(self.rng.gen_range(0..5_000_000)),
                    "CurrentBalanceWithSubAccounts": 0, "CurrencyRef": usd})
            }
            "Item" => {
                let (name, price) = ITEMS[(id as usize) % ITEMS.len()];
                let name = if id as usize >= ITEMS.len() {
                    format!("{name} {id}")
                } else {
                    name.to_string()
                };
                let income = self.account_ref(refs);
                let mut item = json!({"Name": name, "FullyQualifiedName": name, "Active": !id.is_multiple_of(7),
                    "Taxable": true, "UnitPrice": price, "Type": if id.is_multiple_of(3) { "Inventory" } else { "Service" },
                    "IncomeAccountRef": income, "PurchaseCost": 0, "TrackQtyOnHand": id.is_multiple_of(3)});
                if id.is_multiple_of(3) {
                    item["QtyOnHand"] = json!(self.rng.gen_range(0..200));
                    item["InvStartDate"] = json!(txn_date);
                }
                item
            }
            "Customer" => {
                let n = refs.customers.len();
                let given = FIRST[n % FIRST.len()];
                let family = LAST[(n / FIRST.len() + n) % LAST.len()];
                let company = format!("{given}'s {family}");
                let balance = money(self.rng.gen_range(0..200_000));
                let addr = self.address(id);
                let mut c = json!({"Taxable": n.is_multiple_of(2), "BillAddr": addr.clone(), "ShipAddr": addr,
                    "Job": false, "BillWithParent": false, "Balance": balance, "BalanceWithJobs": balance,
                    "CurrencyRef": usd, "PreferredDeliveryMethod": if n.is_multiple_of(3) { "Email" } else { "Print" },
                    "GivenName": given, "FamilyName": family, "FullyQualifiedName": format!("{company} #{id}"),
                    "CompanyName": company, "DisplayName": format!("{company} #{id}"),
                    "PrintOnCheckName": company, "Active": n % 11 != 10,
                    "PrimaryPhone": {"FreeFormNumber": format!("(415) 555-{:04}", id % 10_000)},
                    "PrimaryEmailAddr": {"Address": format!("client{id}@example.com")},
                    "SalesTermRef": {"value": "3"}});
                // Every fifth customer is a job (sub-customer) of the previous one.
                if n % 5 == 4 {
                    if let Some((parent, parent_name)) = refs.customers.last() {
                        c["Job"] = json!(true);
                        c["ParentRef"] = json!({"value": parent.to_string()});
                        c["Level"] = json!(1);
                        c["FullyQualifiedName"] = json!(format!("{parent_name}:Job {id}"));
                        c["DisplayName"] = json!(format!("Job {id}"));
                    }
                }
                c
            }
            "Vendor" => {
                let name = VENDORS[(id as usize) % VENDORS.len()];
                json!({"Balance": money(self.rng.gen_range(0..50_000)), "Vendor1099": id.is_multiple_of(4),
                    "CurrencyRef": usd, "DisplayName": format!("{name} #{id}"), "CompanyName": name,
                    "PrintOnCheckName": name, "Active": !id.is_multiple_of(6), "BillAddr": self.address(id),
                    "PrimaryPhone": {"FreeFormNumber": "(650) 555-3311"}})
            }
            "Invoice" | "CreditMemo" | "SalesReceipt" => {
                let linked =
                    (entity == "Invoice" && id.is_multiple_of(5)).then(|| id.saturating_sub(1));
                let (lines, total) = self.sales_lines(refs, linked);
                let tax = total * 8 / 100;
                let customer = self.customer_ref(refs);
                let mut t = json!({"CustomField": [{"DefinitionId": "1", "Name": "Crew #", "Type": "StringType", "StringValue": (100 + id % 20).to_string()}],
                    "DocNumber": (1000 + id).to_string(), "TxnDate": txn_date, "CurrencyRef": usd,
                    "Line": lines,
                    "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "2"}, "TotalTax": money(tax),
                        "TaxLine": [{"Amount": money(tax), "DetailType": "TaxLineDetail", "TaxLineDetail": {"TaxRateRef": {"value": "3"}, "PercentBased": true, "TaxPercent": 8, "NetAmountTaxable": money(total)}}]},
                    "CustomerRef": customer, "CustomerMemo": {"value": "Thank you for your business and have a great day!"},
                    "BillAddr": self.address(id), "TotalAmt": money(total + tax),
                    "ApplyTaxAfterDiscount": false, "PrintStatus": "NeedToPrint", "EmailStatus": "NotSet",
                    "BillEmail": {"Address": format!("billing{id}@example.com")}});
                match entity {
                    "Invoice" => {
                        t["AllowIPNPayment"] = json!(false);
                        t["AllowOnlinePayment"] = json!(false);
                        t["SalesTermRef"] = json!({"value": "3", "name": "Net 30"});
                        t["DueDate"] =
                            json!(local_date(ts + 30 * 86_400).format("%Y-%m-%d").to_string());
                        t["Balance"] = if id.is_multiple_of(3) {
                            json!(0)
                        } else {
                            money(total + tax)
                        };
                        if let Some(l) = linked {
                            t["LinkedTxn"] =
                                json!([{"TxnId": l.to_string(), "TxnType": "Estimate"}]);
                        }
                    }
                    "CreditMemo" => {
                        t["RemainingCredit"] = money(total + tax);
                        t["Balance"] = money(total + tax);
                    }
                    _ => {
                        t["PaymentMethodRef"] = json!({"value": "2", "name": "Check"});
                        t["DepositToAccountRef"] = self.account_ref(refs);
                        t["Balance"] = json!(0);
                    }
                }
                t
            }
            "Payment" => {
                let mut amount = self.rng.gen_range(1_000..100_000);
                // A payment pays one of the invoices, from that invoice's customer.
                let range = self
                    .tables
                    .get("Invoice")
                    .and_then(|t| Some((*t.first_key_value()?.0, *t.last_key_value()?.0)));
                let invoice = match range {
                    Some((lo, hi)) => self.rng.gen_range(lo..=hi),
                    None => id.saturating_sub(10).max(1),
                };
                let paid = self
                    .tables
                    .get("Invoice")
                    .and_then(|t| t.get(&invoice))
                    .map(Obj::value);
                let customer = match paid.as_ref().and_then(|v| v.get("CustomerRef")) {
                    Some(c) => c.clone(),
                    None => self.customer_ref(refs),
                };
                if let Some(total) = paid
                    .as_ref()
                    .and_then(|v| v.get("TotalAmt"))
                    .and_then(Value::as_f64)
                {
                    amount = amount.min((total * 100.0).round() as i64).max(1);
                }
                json!({"CustomerRef": customer, "DepositToAccountRef": {"value": "4"},
                    "TotalAmt": money(amount), "UnappliedAmt": 0, "ProcessPayment": false, "TxnDate": txn_date,
                    "CurrencyRef": usd,
                    "Line": [{"Amount": money(amount), "LinkedTxn": [{"TxnId": invoice.to_string(), "TxnType": "Invoice"}],
                        "LineEx": {"any": [Self::jaxb("txnId", &invoice.to_string()),
                            Self::jaxb("txnOpenBalance", &format!("{:.2}", amount as f64 / 100.0)),
                            Self::jaxb("txnReferenceNumber", &(1000 + invoice).to_string())]}}]})
            }
            "Purchase" => {
                let amount = self.rng.gen_range(500..50_000);
                let vendor = self.vendor_ref(refs);
                let mut entity_ref = vendor;
                entity_ref["type"] = json!("Vendor");
                let mut purchase = json!({"AccountRef": self.account_ref(refs), "PaymentType": if id.is_multiple_of(2) { "CreditCard" } else { "Check" },
                    "EntityRef": entity_ref, "Credit": false, "TotalAmt": money(amount),
                    "PurchaseEx": {"any": [Self::jaxb("TxnType", "1")]}, "TxnDate": txn_date, "CurrencyRef": usd,
                    "PrivateNote": format!("Bought supplies for crew {}", 100 + id % 20),
                    "Line": [{"Id": "1", "Amount": money(amount), "DetailType": "AccountBasedExpenseLineDetail",
                        "AccountBasedExpenseLineDetail": {"AccountRef": self.account_ref(refs), "BillableStatus": "NotBillable", "TaxCodeRef": {"value": "NON"}}}]});
                // A third of the expenses are bought for a customer (billable to them).
                if id.is_multiple_of(3) {
                    let customer = self.customer_ref(refs);
                    if let Some(detail) = purchase
                        .pointer_mut("/Line/0/AccountBasedExpenseLineDetail")
                        .and_then(Value::as_object_mut)
                    {
                        detail.insert("CustomerRef".into(), customer);
                        detail.insert("BillableStatus".into(), json!("Billable"));
                    }
                }
                purchase
            }
            "Bill" => {
                let a = self.rng.gen_range(500..80_000);
                let b = self.rng.gen_range(500..20_000);
                let (item_id, item_name, _) =
                    self.pick(&refs.items)
                        .cloned()
                        .unwrap_or((11, "Pump".into(), 12.75));
                json!({"SalesTermRef": {"value": "3"}, "DueDate": local_date(ts + 30 * 86_400).format("%Y-%m-%d").to_string(),
                    "Balance": if id.is_multiple_of(2) { json!(0) } else { money(a + b) }, "TxnDate": txn_date, "CurrencyRef": usd,
                    "Line": [
                        {"Id": "1", "LineNum": 1, "Description": "Lumber", "Amount": money(a), "DetailType": "AccountBasedExpenseLineDetail",
                         "AccountBasedExpenseLineDetail": {"CustomerRef": self.customer_ref(refs), "AccountRef": self.account_ref(refs), "BillableStatus": "HasBeenBilled", "TaxCodeRef": {"value": "NON"}}},
                        {"Id": "2", "LineNum": 2, "Amount": money(b), "DetailType": "ItemBasedExpenseLineDetail",
                         "ItemBasedExpenseLineDetail": {"ItemRef": reference(item_id, &item_name), "UnitPrice": b as f64 / 100.0, "Qty": 1, "BillableStatus": "NotBillable", "TaxCodeRef": {"value": "NON"}}}],
                    "VendorRef": self.vendor_ref(refs), "APAccountRef": {"value": "33", "name": "Accounts Payable (A/P)"},
                    "TotalAmt": money(a + b)})
            }
            "Deposit" => {
                let a = self.rng.gen_range(1_000..50_000);
                let b = self.rng.gen_range(1_000..50_000);
                let p = id.saturating_sub(7).max(1);
                json!({"DepositToAccountRef": {"value": "35", "name": "Checking"}, "TotalAmt": money(a + b),
                    "TxnDate": txn_date, "CurrencyRef": usd,
                    "Line": [{"Amount": money(a), "LinkedTxn": [{"TxnId": p.to_string(), "TxnType": "Payment", "TxnLineId": "0"}]},
                             {"Amount": money(b), "LinkedTxn": [{"TxnId": (p + 1).to_string(), "TxnType": "Payment", "TxnLineId": "0"}],
                              "DepositLineDetail": {"PaymentMethodRef": {"value": "2"}}}]})
            }
            "JournalEntry" => {
                let a = self.rng.gen_range(1_000..500_000);
                json!({"Adjustment": false, "TxnDate": txn_date, "CurrencyRef": usd, "DocNumber": format!("JE{id}"),
                    "Line": [
                        {"Id": "0", "Description": "Accrual", "Amount": money(a), "DetailType": "JournalEntryLineDetail",
                         "JournalEntryLineDetail": {"PostingType": "Debit", "AccountRef": self.account_ref(refs)}},
                        {"Id": "1", "Description": "Accrual", "Amount": money(a), "DetailType": "JournalEntryLineDetail",
                         "JournalEntryLineDetail": {"PostingType": "Credit", "AccountRef": self.account_ref(refs)}}],
                    "TotalAmt": money(a)})
            }
            _ => json!({}),
        };
        v["domain"] = json!("QBO");
        v["sparse"] = json!(false);
        v["Id"] = json!(id.to_string());
        v["SyncToken"] = json!("0");
        v["MetaData"] = meta(created.min(ts), ts);
        v
    }

    /// Live objects of `entity` (none for an unknown entity).
    pub fn table(&self, entity: &str) -> impl Iterator<Item = &Obj> {
        self.tables.get(entity).into_iter().flat_map(|t| t.values())
    }

    /// Number of live objects of `entity`, inactive ones included.
    pub fn count(&self, entity: &str) -> usize {
        self.tables.get(entity).map_or(0, BTreeMap::len)
    }

    /// Creates one object of `entity` stamped now; returns its id.
    pub fn create(&mut self, entity: &str) -> Option<String> {
        let now = self.clock.now();
        self.create_at(entity, now)
    }

    /// Creates one object of `entity` stamped `at` (epoch seconds); returns its id.
    pub fn create_at(&mut self, entity: &str, at: i64) -> Option<String> {
        let kind = entity_kind(entity)?;
        let id = self.insert_generated(kind.name, at);
        if let Some(o) = self.tables.get_mut(kind.name).and_then(|t| t.get_mut(&id)) {
            let today = local_date(at).format("%Y-%m-%d").to_string();
            o.edit(|v| {
                if v.get("TxnDate").is_some() {
                    v["TxnDate"] = json!(today);
                }
                v["MetaData"] = meta(at, at);
            });
        }
        let id = id.to_string();
        self.announce(kind.name, &id, Operation::Create, at);
        Some(id)
    }

    /// Tells the webhook sender about a change (every mutation after generation ends here).
    fn announce(&self, entity: &str, id: &str, operation: Operation, at: i64) {
        if let Some(w) = &self.webhooks {
            w.emit(
                Change {
                    entity: entity.to_string(),
                    id: id.to_string(),
                    operation,
                },
                at,
            );
        }
    }

    /// Updates an object: bumps `SyncToken`, stamps `LastUpdatedTime` now, changes a note.
    /// Returns false if there is no such object.
    pub fn update(&mut self, entity: &str, id: &str) -> bool {
        let now = self.clock.now();
        self.update_at(entity, id, now)
    }

    /// [`Store::update`] stamped `at` (epoch seconds).
    pub fn update_at(&mut self, entity: &str, id: &str, at: i64) -> bool {
        let n = self.mutations + 1;
        self.edit_at(entity, id, at, |v| {
            v["PrivateNote"] = json!(format!("edited (change {n})"));
        })
    }

    /// Edits an object with `f`, as an application would: bumps `SyncToken`, stamps
    /// `LastUpdatedTime` `at` (epoch seconds) and announces the update. False if absent.
    pub fn edit_at(&mut self, entity: &str, id: &str, at: i64, f: impl FnOnce(&mut Value)) -> bool {
        let Ok(num) = id.parse::<u64>() else {
            return false;
        };
        let Some(o) = self.tables.get_mut(entity).and_then(|t| t.get_mut(&num)) else {
            return false;
        };
        o.ts = at;
        o.edit(|v| {
            bump(v, at);
            f(v);
        });
        self.ts_index.clear();
        self.mutations += 1;
        self.announce(entity, id, Operation::Update, at);
        true
    }

    /// Deletes an object: transactions are removed and leave a CDC tombstone; list
    /// entities only become inactive (an ordinary update), as in QuickBooks.
    pub fn delete(&mut self, entity: &str, id: &str) -> bool {
        let now = self.clock.now();
        self.delete_at(entity, id, now)
    }

    /// [`Store::delete`] stamped `at` (epoch seconds).
    pub fn delete_at(&mut self, entity: &str, id: &str, at: i64) -> bool {
        let (Some(kind), Ok(num)) = (entity_kind(entity), id.parse::<u64>()) else {
            return false;
        };
        self.ts_index.clear();
        let now = at;
        if kind.list {
            let Some(o) = self.tables.get_mut(entity).and_then(|t| t.get_mut(&num)) else {
                return false;
            };
            o.ts = now;
            o.edit(|v| {
                bump(v, now);
                v["Active"] = json!(false);
            });
            // Intuit lists `Delete` among the operations of list entities too, while
            // CDC shows the row as an inactive update; the webhook says what the user did.
            self.announce(kind.name, id, Operation::Delete, now);
            return true;
        }
        let Some(_) = self.tables.get_mut(entity).and_then(|t| t.remove(&num)) else {
            return false;
        };
        let stub = json!({"domain": "QBO", "status": "Deleted", "Id": id, "MetaData": {"LastUpdatedTime": format_ts(now)}});
        self.tombstones.push(Tombstone {
            entity: kind.name,
            id: num,
            ts: now,
            text: stub.to_string(),
        });
        self.announce(kind.name, id, Operation::Delete, now);
        true
    }

    /// Ages the whole company by `secs`: every object's (and deletion's) `CreateTime` and
    /// `LastUpdatedTime` move that far into the past, as if it had been quiet since.
    pub fn age(&mut self, secs: i64) {
        self.ts_index.clear();
        for table in self.tables.values_mut() {
            for o in table.values_mut() {
                o.ts -= secs;
                let ts = o.ts;
                o.edit(|v| {
                    let create = v
                        .pointer("/MetaData/CreateTime")
                        .and_then(Value::as_str)
                        .and_then(parse_ts)
                        .unwrap_or(ts + secs);
                    v["MetaData"] = meta(create - secs, ts);
                });
            }
        }
        for t in &mut self.tombstones {
            t.ts -= secs;
            let id = t.id.to_string();
            t.text = json!({"domain": "QBO", "status": "Deleted", "Id": id, "MetaData": {"LastUpdatedTime": format_ts(t.ts)}}).to_string();
        }
    }

    /// Stamps every live object (of `entity`, or of all entities) with one
    /// `LastUpdatedTime`: the many-rows-on-one-timestamp case.
    pub fn set_timestamps(&mut self, entity: Option<&str>, at: i64) {
        self.ts_index.clear();
        for (name, table) in self.tables.iter_mut() {
            if entity.is_some_and(|e| e != *name) {
                continue;
            }
            for o in table.values_mut() {
                o.ts = at;
                o.edit(|v| {
                    let create = v
                        .pointer("/MetaData/CreateTime")
                        .and_then(Value::as_str)
                        .and_then(parse_ts)
                        .unwrap_or(at);
                    v["MetaData"] = meta(create.min(at), at);
                });
            }
        }
    }

    /// Stamps one object with `LastUpdatedTime` `at` (SyncToken bumped, as an edit would).
    pub fn set_timestamp(&mut self, entity: &str, id: &str, at: i64) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        self.ts_index.clear();
        let Some(o) = self.tables.get_mut(entity).and_then(|t| t.get_mut(&id)) else {
            return false;
        };
        o.ts = at;
        o.edit(|v| bump(v, at));
        let id = id.to_string();
        self.announce(entity, &id, Operation::Update, at);
        true
    }

    /// Builds (once per change) the (LastUpdatedTime, id) order of `entity`.
    pub fn prepare_index(&mut self, entity: &'static str) {
        if self.ts_index.contains_key(entity) {
            return;
        }
        let mut index: Vec<(i64, u64)> = self.table(entity).map(|o| (o.ts, o.id)).collect();
        index.sort_unstable();
        self.ts_index.insert(entity, index);
    }

    /// The index built by [`Store::prepare_index`], if current.
    pub fn ts_index(&self, entity: &str) -> Option<&[(i64, u64)]> {
        self.ts_index.get(entity).map(Vec::as_slice)
    }

    /// One live object.
    pub fn get(&self, entity: &str, id: u64) -> Option<&Obj> {
        self.tables.get(entity)?.get(&id)
    }

    /// Ids of live objects of `entity`, ascending.
    pub fn ids(&self, entity: &str) -> Vec<String> {
        self.table(entity).map(|o| o.id.to_string()).collect()
    }
}

fn entity_kind(name: &str) -> Option<EntityKind> {
    entity(name)
}

/// An edit's bookkeeping: the next `SyncToken` and `LastUpdatedTime` `now` (the caller
/// sets the object's `ts`).
fn bump(v: &mut Value, now: i64) {
    let sync = v
        .get("SyncToken")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    v["SyncToken"] = json!((sync + 1).to_string());
    let create = v
        .pointer("/MetaData/CreateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(now);
    v["MetaData"] = meta(create, now);
}
