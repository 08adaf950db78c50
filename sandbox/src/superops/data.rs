//! Deterministic tenant data and the mutations tests apply to it.
//!
//! Rows are kept as JSON objects exactly as the API renders them (IDs as strings at the
//! top level, big IDs as bare numbers inside some JSON scalars, zone-less timestamps in the
//! per-entity formats the reference documents), so the executor can filter, sort and
//! project them generically.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::schema::Collection;

/// How much data a generated tenant holds.
#[derive(Debug, Clone)]
pub struct TenantSize {
    /// Clients (accounts).
    pub clients: usize,
    /// Sites per client (the first is the HQ).
    pub sites_per_client: usize,
    /// Technicians.
    pub technicians: usize,
    /// Tickets.
    pub tickets: usize,
    /// Worklog entries of the PROJECT module (TICKET entries follow from the tickets).
    pub project_worklogs: usize,
    /// Alerts.
    pub alerts: usize,
    /// Assets.
    pub assets: usize,
    /// Invoices.
    pub invoices: usize,
    /// Clients to create first, with these account ids and names (an MSP's clients, as
    /// the sandbox's roster lists them); `clients` more follow, unmapped.
    pub roster: Vec<(u64, String)>,
    /// The instant the generated history ends (default [`epoch`]).
    pub epoch: Option<NaiveDateTime>,
}

impl Default for TenantSize {
    fn default() -> Self {
        TenantSize {
            clients: 12,
            sites_per_client: 2,
            technicians: 8,
            tickets: 300,
            project_worklogs: 40,
            alerts: 150,
            assets: 80,
            invoices: 48,
            roster: Vec::new(),
            epoch: None,
        }
    }
}

/// The name of the `k`-th generated (not rostered) client.
fn generated_client_name(k: usize) -> String {
    if k < CLIENT_NAMES.len() {
        CLIENT_NAMES[k].to_string()
    } else {
        format!(
            "{} {}",
            CLIENT_NAMES[k % CLIENT_NAMES.len()],
            k / CLIENT_NAMES.len() + 1
        )
    }
}

/// IDs are 19 digits, above 2^53, like the real ones: a float parser cannot keep them.
const ID_BASE: u64 = 7_928_838_372_000_000_000;

fn id(kind: u64, i: usize) -> u64 {
    ID_BASE + kind * 10_000_000 + i as u64
}

/// The instant the generated history ends and mutations start from.
pub fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 7, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Formats a zone-less timestamp with 0, 3 or 6 fractional digits.
pub fn fmt_time(t: NaiveDateTime, fraction_digits: u8) -> String {
    match fraction_digits {
        3 => t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
        6 => t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        _ => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
    }
}

/// Alerts use minute precision (`2021-12-18T15:35`).
fn fmt_minutes(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

fn fmt_date(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Parses any zone-less form the API uses (date, minutes, seconds, fractions), plus a
/// trailing `Z`.
pub fn parse_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

const CLIENT_NAMES: &[&str] = &[
    "Acme Management",
    "Globex Corporation",
    "Initech",
    "Umbrella Health",
    "Stark Logistics",
    "Wayne Dental",
    "Hooli Legal",
    "Vandelay Imports",
    "Soylent Foods",
    "Tyrell Architects",
    "Cyberdyne Accounting",
    "Wonka Retail",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Austin", "TX", "America/Chicago"),
    ("Denver", "CO", "America/Denver"),
    ("Seattle", "WA", "America/Los_Angeles"),
    ("Boston", "MA", "America/New_York"),
];
const FIRST: &[&str] = &[
    "Jason", "Maria", "Ken", "Priya", "Omar", "Lena", "Tom", "Aiko", "Raj", "Zoe",
];
const LAST: &[&str] = &[
    "Wheeler", "Santos", "Ito", "Nair", "Haddad", "Berg", "Kowalski", "Mori",
];
const SUBJECTS: &[&str] = &[
    "Help! Internet is not working!",
    "Printer offline",
    "Outlook keeps asking for password",
    "New starter laptop",
    "VPN drops every hour",
    "Backup job failed",
    "Reset MFA",
];
const SLAS: &[(&str, i64, i64)] = &[
    ("VIP SLA", 1, 8),
    ("Standard SLA", 4, 24),
    ("Basic SLA", 8, 72),
];

/// A client as tickets and assets refer to it: account id, name, sites (id, name).
type ClientRef = (u64, String, Vec<(u64, String)>);

/// A generated tenant: every collection, the virtual clock and the mutation helpers.
#[derive(Debug)]
pub struct Tenant {
    /// Virtual "now": mutations stamp `updatedTime` with it and advance it by a second.
    pub clock: NaiveDateTime,
    /// Bumped on every change, to invalidate cached query results.
    pub generation: u64,
    /// Fractional digits of ticket timestamps (0, 3 or 6).
    pub ticket_fraction_digits: u8,
    rows: HashMap<Collection, Vec<Map<String, Value>>>,
    ticket_pos: HashMap<String, usize>,
    rng: StdRng,
    next_ticket: usize,
    next_worklog: usize,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

impl Tenant {
    /// Generates a tenant from `seed`; the same seed and size give the same data.
    pub fn generate(seed: u64, size: &TenantSize, ticket_fraction_digits: u8) -> Tenant {
        let mut rng = StdRng::seed_from_u64(seed);
        let clock = size.epoch.unwrap_or_else(epoch);
        let mut rows: HashMap<Collection, Vec<Map<String, Value>>> = HashMap::new();

        let techs: Vec<(u64, String)> = (0..size.technicians.max(1))
            .map(|i| {
                (
                    id(3, i),
                    format!(
                        "{} {}",
                        FIRST[i % FIRST.len()],
                        LAST[(i / FIRST.len() + i) % LAST.len()]
                    ),
                )
            })
            .collect();
        let groups = [
            (id(4, 0), "Network"),
            (id(4, 1), "Service Desk"),
            (id(4, 2), "Projects"),
        ];
        rows.insert(
            Collection::Technicians,
            techs
                .iter()
                .enumerate()
                .map(|(i, (uid, name))| {
                    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
                    let g = groups[i % groups.len()];
                    obj(json!({
                        "userId": uid.to_string(), "firstName": first, "lastName": last, "name": name,
                        "email": format!("{}.{}@msp.example", first.to_lowercase(), last.to_lowercase()),
                        "contactNumber": format!("+1 512 555 {:04}", 100 + i),
                        "emailSignature": format!("<p>{name}</p>"),
                        "designation": {"designationId": id(20, i % 3).to_string(), "name": (["Engineer", "Senior Engineer", "Lead"][i % 3])},
                        "businessFunction": {"businessFunctionId": id(21, 0).to_string(), "name": "Support"},
                        "team": {"teamId": id(22, i % 2).to_string(), "name": (["Blue", "Green"][i % 2])},
                        "reportingManager": if i == 0 { Value::Null } else { json!({"userId": techs[0].0.to_string(), "name": techs[0].1}) },
                        "role": {"roleId": id(23, 0).to_string(), "name": "Technician"},
                        "groups": [{"groupId": g.0.to_string(), "name": g.1}],
                    }))
                })
                .collect(),
        );

        let n_clients = (size.roster.len() + size.clients).max(1);
        let mut clients = Vec::new();
        let mut sites = Vec::new();
        let mut contracts = Vec::new();
        // (accountId, name, [(siteId, siteName)])
        let mut client_refs: Vec<ClientRef> = Vec::new();
        for c in 0..n_clients {
            let (account, name) = match size.roster.get(c) {
                Some((account, name)) => (*account, name.clone()),
                None => {
                    let k = c - size.roster.len();
                    (id(1, c), generated_client_name(k))
                }
            };
            let mut site_refs = Vec::new();
            for s in 0..size.sites_per_client.max(1) {
                let sid = id(2, c * 100 + s);
                let (city, state, tz) = CITIES[(c + s) % CITIES.len()];
                let sname = if s == 0 {
                    format!("{city} HQ")
                } else {
                    format!("{city} {s}")
                };
                sites.push(obj(json!({
                    "id": sid.to_string(), "name": sname,
                    // The LIVE finding: accountId inside this JSON scalar is a bare number.
                    "client": {"accountId": account, "name": name},
                    "hq": s == 0, "timezoneCode": tz, "working24x7": c % 5 == 0,
                    "businessHour": (["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"].iter()
                        .map(|d| json!({"day": d, "start": "09:00", "end": "17:30"})).collect::<Vec<_>>()),
                    "holidayList": if s == 0 { json!([{"id": id(24, c).to_string(), "name": "Founders Day"}]) } else { json!([]) },
                    "line1": format!("{} Main Street", 100 + c), "line2": null, "line3": null,
                    "city": city, "postalCode": format!("{:05}", 73301 + c), "countryCode": "US",
                    "stateCode": state, "contactNumber": format!("+1 555 01{:02}", c % 100),
                })));
                site_refs.push((sid, sname));
            }
            let tech = &techs[c % techs.len()];
            clients.push(obj(json!({
                "accountId": account.to_string(), "name": name,
                "stage": if c % 7 == 6 { "Inactive" } else { "Active" },
                "status": if c % 4 == 3 { Value::Null } else { json!("Paid") },
                "emailDomains": [format!("{}.example", name.to_lowercase().replace(' ', ""))],
                "accountManager": {"userId": tech.0.to_string(), "name": tech.1},
                "primaryContact": {"userId": id(13, c * 10).to_string(), "name": format!("{} {}", FIRST[(c + 3) % FIRST.len()], LAST[c % LAST.len()])},
                "secondaryContact": if c % 3 == 0 { Value::Null } else { json!({"userId": id(13, c * 10 + 1).to_string(), "name": "Joseph"}) },
                "hqSite": {"id": site_refs[0].0.to_string(), "name": site_refs[0].1},
                "technicianGroups": [{"groupId": groups[c % 3].0.to_string(), "name": groups[c % 3].1}],
                "customFields": {"udf1text": format!("tier-{}", c % 3), "udf2date": "2022-05-06"},
            })));
            for k in 0..(1 + c % 2) {
                let types = ["SERVICE", "USAGE", "ONE_TIME", "TIME_AND_MATERIAL"];
                let ctype = types[(c + k) % types.len()];
                let start =
                    NaiveDate::from_ymd_opt(2023, 1 + (c % 12) as u32, 1).unwrap_or_default();
                contracts.push(obj(json!({
                    "contractId": id(7, c * 10 + k).to_string(),
                    "client": {"accountId": account, "name": name},
                    "contract": {
                        "contractId": id(6, (c + k) % 6).to_string(),
                        "name": format!("{} plan", ["Gold", "Silver", "Bronze", "Block hours", "Project", "Pay as you go"][(c + k) % 6]),
                        "description": "Managed services agreement",
                        "contractType": ctype,
                        "billableContract": {
                            "chargeItem": {"itemId": id(14, k), "name": "Managed endpoint"},
                            "frequencyType": if ctype == "ONE_TIME" { "ONCE" } else { "RECURRING" },
                            "billableSiteType": (["HQ", "ALL", "INCLUDED"][c % 3]),
                            "sellingPrice": {"model": "PER_UNIT", "details": {"value": money(4999 + 1000 * (c as i64 % 5)), "afterHoursValue": money(7499)}},
                            "recurringContract": {"nextBillDate": "2024-08-01"},
                            "blockItemsInfo": null,
                        }
                    },
                    "startDate": start.format("%Y-%m-%d").to_string(),
                    "endDate": if k == 1 { json!("2024-12-31") } else { Value::Null },
                    "contractStatus": (["ACTIVE", "ACTIVE", "INACTIVE", "DRAFT"][(c + k) % 4]),
                })));
            }
            client_refs.push((account, name, site_refs));
        }
        rows.insert(Collection::Clients, clients);
        rows.insert(Collection::Sites, sites);
        rows.insert(Collection::Contracts, contracts);

        let mut tenant = Tenant {
            clock,
            generation: 0,
            ticket_fraction_digits,
            rows,
            ticket_pos: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            next_ticket: 0,
            next_worklog: 0,
        };

        // Tickets spread over the 180 days before the clock, created in order.
        let span = 180 * 86_400i64;
        let n = size.tickets;
        let mut tickets = Vec::with_capacity(n);
        let mut worklogs = Vec::new();
        for i in 0..n {
            let offset = span - (span * i as i64) / (n.max(1) as i64) - rng.gen_range(0..600);
            let created = clock - Duration::seconds(offset.max(3_600))
                + Duration::microseconds(rng.gen_range(0..1_000_000));
            let (ticket, wl) =
                tenant.make_ticket(&mut rng, i, created, &client_refs, &techs, &groups);
            tickets.push(ticket);
            worklogs.extend(wl);
        }
        tenant.next_ticket = n;
        for p in 0..size.project_worklogs {
            let tech = &techs[p % techs.len()];
            let t = clock - Duration::hours(rng.gen_range(2..24 * 120))
                + Duration::microseconds(rng.gen_range(0..1_000_000));
            worklogs.push(tenant.make_worklog(
                &mut rng,
                tech,
                t,
                json!({"workId": id(30, p / 5).to_string(), "displayId": format!("PRJ-{}", p / 5 + 1), "module": "PROJECT"}),
            ));
        }
        tenant.ticket_pos = tickets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                t.get("ticketId")
                    .and_then(Value::as_str)
                    .map(|s| (s.to_string(), i))
            })
            .collect();
        tenant.rows.insert(Collection::Tickets, tickets);
        tenant.rows.insert(Collection::Worklogs, worklogs);

        let mut assets = Vec::new();
        for a in 0..size.assets {
            let (account, cname, srefs) = &client_refs[a % client_refs.len()];
            let site = &srefs[a % srefs.len()];
            let seen = clock - Duration::minutes(rng.gen_range(1..60 * 24 * 30))
                + Duration::milliseconds(rng.gen_range(0..1000));
            assets.push(obj(json!({
                "assetId": id(10, a).to_string(), "name": format!("WS-{:04}", a),
                "assetClass": {"classId": id(25, a % 3).to_string(), "name": (["Workstation", "Server", "Network Device"][a % 3])},
                "client": {"accountId": account, "name": cname},
                "site": {"id": site.0.to_string(), "name": site.1},
                "requester": {"userId": id(13, a).to_string(), "name": FIRST[a % FIRST.len()]},
                "primaryMac": format!("00:1A:2B:{:02X}:{:02X}:{:02X}", a / 65536 % 256, a / 256 % 256, a % 256),
                "loggedInUser": format!("user{a}"), "serialNumber": format!("SN{:08}", a * 7919),
                "manufacturer": (["Dell", "HP", "Lenovo"][a % 3]), "model": (["Latitude 5440", "EliteBook 840", "ThinkPad T14"][a % 3]),
                "hostName": format!("ws-{a:04}"), "publicIp": format!("203.0.113.{}", a % 250 + 1),
                "gateway": "192.168.1.1", "platform": "Windows", "domain": "corp.example",
                "status": if a % 5 == 0 { "OFFLINE" } else { "ONLINE" }, "sysUptime": format!("{}", rng.gen_range(100..900_000)),
                "lastCommunicatedTime": fmt_time(seen, 3), "agentVersion": "3.12.4",
                "platformFamily": "Windows", "platformCategory": "Workstation", "platformVersion": "10.0.22631",
                "patchStatus": (["UP_TO_DATE", "PENDING"][a % 2]),
                "warrantyExpiryDate": "2026-03-31", "purchasedDate": "2023-03-31",
                "customFields": {}, "lastReportedTime": fmt_time(seen, 3),
                "deviceCategory": {"id": id(26, a % 2).to_string(), "name": (["Laptop", "Desktop"][a % 2])},
            })));
        }
        let mut alerts = Vec::new();
        for a in 0..size.alerts {
            let asset = assets.get(a % assets.len().max(1));
            let created = clock - Duration::minutes(rng.gen_range(5..60 * 24 * 60));
            let resolved = a % 3 != 0;
            let (account, cname, srefs) =
                &client_refs[(a % assets.len().max(1)) % client_refs.len()];
            alerts.push(obj(json!({
                "id": id(9, a).to_string(),
                "message": (["CPU usage above 90%", "Disk space low", "Service stopped"][a % 3]),
                "createdTime": fmt_minutes(created),
                "status": if resolved { "Resolved" } else { "Open" },
                "severity": (["Critical", "High", "Medium", "Low"][a % 4]),
                "description": "Raised by monitoring policy",
                "asset": {
                    // IDs inside this JSON scalar are bare numbers, as in the IT webhooks.
                    "assetId": id(10, a % assets.len().max(1)),
                    "name": asset.and_then(|x| x.get("name")).cloned().unwrap_or(Value::Null),
                    "owner": {"name": "IT", "email": "it@client.example"},
                    "client": {"accountId": account, "name": cname},
                    "site": {"id": srefs[0].0, "name": srefs[0].1},
                },
                "policy": {"name": "Default Windows policy", "policyType": "MONITORING"},
                "resolvedTime": if resolved { json!(fmt_minutes(created + Duration::minutes(rng.gen_range(3..600)))) } else { Value::Null },
                "occurrenceCount": rng.gen_range(1..20),
            })));
        }
        let mut invoices = Vec::new();
        for v in 0..size.invoices {
            let (account, cname, srefs) = &client_refs[v % client_refs.len()];
            let date = clock - Duration::days(rng.gen_range(1..200));
            let mut items = Vec::new();
            let mut total = 0i64;
            let mut taxed = 0i64;
            for k in 0..(1 + v % 3) {
                let qty = 1 + (v + k) as i64 % 4;
                let unit = 2500 + 1250 * ((v * 3 + k) as i64 % 7);
                let amount = qty * unit;
                let tax = amount * 825 / 10_000;
                total += amount + tax;
                taxed += tax;
                items.push(json!({
                    "itemId": id(15, v * 10 + k).to_string(), "billedDate": fmt_date(date),
                    "details": "Managed services", "quantity": format!("{qty}.00"), "unitPrice": money(unit),
                    "discountRate": "0.00", "amount": money(amount), "taxable": true,
                    "tax": {"id": id(16, 0).to_string(), "name": "Sales tax"},
                    "serviceItem": {"itemId": id(14, k), "name": "Managed endpoint"},
                    "taxAmount": money(tax), "totalAmount": money(amount + tax),
                }));
            }
            let status = ["DRAFT", "APPROVED", "PAID", "OVERDUE", "VOID"][v % 5];
            invoices.push(obj(json!({
                "invoiceId": id(11, v).to_string(), "displayId": format!("INV-{:05}", v + 1),
                "client": {"accountId": account, "name": cname}, "site": {"id": srefs[0].0.to_string(), "name": srefs[0].1},
                "invoiceDate": fmt_date(date), "dueDate": fmt_date(date + Duration::days(30)),
                "statusEnum": status, "sentToClient": status != "DRAFT", "items": items,
                "taxes": [{"id": id(16, 0).to_string(), "tax": {"name": "Sales tax"}, "taxRate": "8.25", "taxableAmount": money(total - taxed), "taxAmount": money(taxed), "rate": "8.25"}],
                "discountAmount": "0.00", "additionalDiscount": "0.00", "additionalDiscountRate": "0.00",
                "totalAmount": money(total), "notes": null,
                "paymentDate": if status == "PAID" { json!(fmt_date(date + Duration::days(12))) } else { Value::Null },
                "paymentMethod": if status == "PAID" { json!({"id": id(27, 0).to_string(), "name": "ACH"}) } else { Value::Null },
                "paymentReference": if status == "PAID" { json!(format!("ACH-{v}")) } else { Value::Null },
                "invoicePaymentTerm": {"id": id(28, 0).to_string(), "name": "Net 30"},
            })));
        }
        tenant.rows.insert(Collection::Assets, assets);
        tenant.rows.insert(Collection::Alerts, alerts);
        tenant.rows.insert(Collection::Invoices, invoices);
        tenant.next_worklog = tenant.rows.get(&Collection::Worklogs).map_or(0, Vec::len);
        tenant
    }

    fn make_worklog(
        &mut self,
        rng: &mut StdRng,
        tech: &(u64, String),
        at: NaiveDateTime,
        work_item: Value,
    ) -> Map<String, Value> {
        let n = self.next_worklog;
        self.next_worklog += 1;
        let quarters = rng.gen_range(1..13);
        let billable = rng.gen_bool(0.7);
        obj(json!({
            "itemId": id(8, n).to_string(),
            "status": (["PENDING", "APPROVED", "INVOICED", "UNDER_CONTRACT"][n % 4]),
            "serviceItem": {"itemId": id(14, n % 3).to_string(), "name": (["Remote support", "Onsite support", "Project work"][n % 3])},
            "billable": billable, "afterHours": n.is_multiple_of(9),
            "qty": format!("{}.{:02}", quarters / 4, (quarters % 4) * 25),
            "unitPrice": if billable { json!("95.00") } else { Value::Null },
            // The 6-digit fraction is one of the documented response formats.
            "billDateTime": fmt_time(at, 6),
            // A bare big number inside a JSON scalar.
            "technician": {"userId": tech.0, "name": tech.1},
            "notes": "Worked on it",
            "workItem": work_item,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn make_ticket(
        &mut self,
        rng: &mut StdRng,
        i: usize,
        created: NaiveDateTime,
        clients: &[ClientRef],
        techs: &[(u64, String)],
        groups: &[(u64, &str)],
    ) -> (Map<String, Value>, Vec<Map<String, Value>>) {
        let d = self.ticket_fraction_digits;
        let c = rng.gen_range(0..clients.len());
        let (account, cname, srefs) = &clients[c];
        let site = &srefs[rng.gen_range(0..srefs.len())];
        let tech = (rng.gen_range(0..20) != 0).then(|| &techs[rng.gen_range(0..techs.len())]);
        let sla = (rng.gen_range(0..10) != 0).then(|| rng.gen_range(0..SLAS.len()));
        let resolved = rng.gen_bool(0.65) && created < self.clock - Duration::hours(2);
        let responded = resolved || rng.gen_bool(0.5);
        let latest = self.clock - Duration::seconds(1);
        // Most tickets are answered and resolved in time, as at a healthy MSP; a tail is not.
        let fr_minutes = if rng.gen_bool(0.85) {
            rng.gen_range(5..55)
        } else {
            rng.gen_range(55..600)
        };
        let res_minutes = if rng.gen_bool(0.8) {
            rng.gen_range(30..60 * 7)
        } else {
            rng.gen_range(60 * 7..60 * 24 * 5)
        };
        let fr_time = responded.then(|| (created + Duration::minutes(fr_minutes)).min(latest));
        let res_time = resolved.then(|| {
            let t = created + Duration::minutes(res_minutes);
            t.max(fr_time.unwrap_or(t)).min(latest)
        });
        let (fr_due, res_due) = match sla {
            Some(s) => (
                Some(created + Duration::hours(SLAS[s].1)),
                Some(created + Duration::hours(SLAS[s].2)),
            ),
            None => (None, None),
        };
        let violated = |due: Option<NaiveDateTime>, at: Option<NaiveDateTime>| match (due, at) {
            (Some(due), Some(at)) => json!(at > due),
            _ => Value::Null,
        };
        let updated = [Some(created), fr_time, res_time]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(created)
            + Duration::seconds(rng.gen_range(0..7_200));
        let updated = updated.min(latest);
        let status = if resolved {
            ["Resolved", "Closed"][rng.gen_range(0..2)]
        } else {
            ["Open", "In Progress", "On Hold", "Waiting on Client"][rng.gen_range(0..4)]
        };
        let tid = id(5, i);
        let mut worklogs = Vec::new();
        let mut minutes = 0i64;
        if let Some(t) = tech {
            for _ in 0..rng.gen_range(0..4) {
                let at = created + Duration::minutes(rng.gen_range(1..120));
                let wl = self.make_worklog(
                    rng,
                    t,
                    at.min(latest),
                    json!({"workId": tid.to_string(), "displayId": format!("T-{}", i + 1), "module": "TICKET"}),
                );
                let qty = wl.get("qty").and_then(Value::as_str).unwrap_or("0");
                minutes += parse_hundredths(qty) * 60 / 100;
                worklogs.push(wl);
            }
        }
        let group = groups[c % groups.len()];
        let fmt = |t: Option<NaiveDateTime>| t.map_or(Value::Null, |t| json!(fmt_time(t, d)));
        let ticket = obj(json!({
            "ticketId": tid.to_string(),
            "displayId": format!("{}-{:04}", created.format("%m%d%y"), i % 10_000),
            "subject": SUBJECTS[i % SUBJECTS.len()],
            "ticketType": if i.is_multiple_of(4) { "SERVICE_REQUEST" } else { "INCIDENT" },
            "requestType": if i.is_multiple_of(4) { "Service Request" } else { "Incident" },
            "source": (["FORM", "AGENT", "EMAIL", "PHONE", "INTEGRATION"][i % 5]),
            "client": {"accountId": account, "name": cname},
            "site": {"id": site.0.to_string(), "name": site.1},
            "requester": {"userId": id(13, c * 10).to_string(), "name": "John Williams"},
            "additionalRequester": [],
            "followers": [],
            "techGroup": {"groupId": group.0.to_string(), "name": group.1},
            "technician": tech.map_or(Value::Null, |t| json!({"userId": t.0, "name": t.1})),
            "status": status,
            "priority": (["Low", "Medium", "High", "Urgent"][rng.gen_range(0..4)]),
            "impact": "Medium", "urgency": "Medium",
            "category": "Network", "subcategory": "Wireless", "cause": null, "subcause": null,
            "resolutionCode": if resolved { json!("Permanent Fix") } else { Value::Null },
            "sla": sla.map_or(Value::Null, |s| json!({"id": id(12, s).to_string(), "name": SLAS[s].0})),
            "createdTime": fmt_time(created, d),
            "updatedTime": fmt_time(updated, d),
            "firstResponseDueTime": fmt(fr_due),
            "firstResponseTime": fmt(fr_time),
            "firstResponseViolated": violated(fr_due, fr_time),
            "resolutionDueTime": fmt(res_due),
            "resolutionTime": fmt(res_time),
            "resolutionViolated": violated(res_due, res_time),
            "customFields": {"udf1text": "value", "udf5mselect": ["value1", "value2"]},
            "worklogTimespent": format!("{minutes}.00"),
        }));
        (ticket, worklogs)
    }

    /// The rows of `collection`.
    pub fn rows(&self, collection: Collection) -> &[Map<String, Value>] {
        self.rows.get(&collection).map_or(&[], Vec::as_slice)
    }

    fn tick(&mut self) -> NaiveDateTime {
        self.clock += Duration::seconds(1);
        self.generation += 1;
        self.clock
    }

    fn ticket_mut(&mut self, ticket_id: &str) -> Option<&mut Map<String, Value>> {
        let pos = *self.ticket_pos.get(ticket_id)?;
        self.rows.get_mut(&Collection::Tickets)?.get_mut(pos)
    }

    /// Opens a new ticket for the client at index `client` (modulo the client count) and
    /// returns its id. It is created and updated at the (advanced) clock.
    pub fn open_ticket(&mut self, client: usize) -> String {
        let now = self.tick();
        let d = self.ticket_fraction_digits;
        let i = self.next_ticket;
        self.next_ticket += 1;
        let clients = self.rows(Collection::Clients);
        let c = &clients[client % clients.len().max(1)];
        let account: u64 = c
            .get("accountId")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let cname = c.get("name").cloned().unwrap_or(Value::Null);
        let hq = c.get("hqSite").cloned().unwrap_or(Value::Null);
        let tech = self.rows(Collection::Technicians).first().map(|t| {
            json!({"userId": t.get("userId").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok()), "name": t.get("name")})
        });
        let tid = id(5, i);
        let ticket = obj(json!({
            "ticketId": tid.to_string(), "displayId": format!("{}-{:04}", now.format("%m%d%y"), i % 10_000),
            "subject": "Opened during the test", "ticketType": "INCIDENT", "requestType": "Incident",
            "source": "EMAIL", "client": {"accountId": account, "name": cname}, "site": hq,
            "requester": {"userId": id(13, 0).to_string(), "name": "John Williams"},
            "additionalRequester": [], "followers": [],
            "techGroup": {"groupId": id(4, 1).to_string(), "name": "Service Desk"},
            "technician": tech.unwrap_or(Value::Null), "status": "Open", "priority": "High",
            "impact": "High", "urgency": "High", "category": "Network", "subcategory": "Wireless",
            "cause": null, "subcause": null, "resolutionCode": null,
            "sla": {"id": id(12, 1).to_string(), "name": SLAS[1].0},
            "createdTime": fmt_time(now, d), "updatedTime": fmt_time(now, d),
            "firstResponseDueTime": fmt_time(now + Duration::hours(SLAS[1].1), d), "firstResponseTime": null,
            "firstResponseViolated": null,
            "resolutionDueTime": fmt_time(now + Duration::hours(SLAS[1].2), d), "resolutionTime": null,
            "resolutionViolated": null, "customFields": {}, "worklogTimespent": "0.00",
        }));
        if let Some(list) = self.rows.get_mut(&Collection::Tickets) {
            self.ticket_pos.insert(tid.to_string(), list.len());
            list.push(ticket);
        }
        tid.to_string()
    }

    /// Edits a ticket (priority, first response) and stamps `updatedTime`. Returns false
    /// when there is no such ticket.
    pub fn update_ticket(&mut self, ticket_id: &str) -> bool {
        let now = self.tick();
        let d = self.ticket_fraction_digits;
        let Some(t) = self.ticket_mut(ticket_id) else {
            return false;
        };
        t.insert("priority".into(), json!("Urgent"));
        if t.get("status").and_then(Value::as_str) == Some("Open") {
            t.insert("status".into(), json!("In Progress"));
        }
        if t.get("firstResponseTime").is_none_or(Value::is_null) {
            respond(t, now, d);
        }
        t.insert("updatedTime".into(), json!(fmt_time(now, d)));
        true
    }

    /// Resolves a ticket at the clock (first response too, if it had none).
    pub fn resolve_ticket(&mut self, ticket_id: &str) -> bool {
        let now = self.tick();
        let d = self.ticket_fraction_digits;
        let Some(t) = self.ticket_mut(ticket_id) else {
            return false;
        };
        if t.get("firstResponseTime").is_none_or(Value::is_null) {
            respond(t, now, d);
        }
        t.insert("status".into(), json!("Resolved"));
        t.insert("resolutionCode".into(), json!("Permanent Fix"));
        t.insert("resolutionTime".into(), json!(fmt_time(now, d)));
        let due = t
            .get("resolutionDueTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        t.insert(
            "resolutionViolated".into(),
            due.map_or(Value::Null, |due| json!(now > due)),
        );
        t.insert("updatedTime".into(), json!(fmt_time(now, d)));
        true
    }

    /// Moves a ticket to `status` and stamps `updatedTime` (`Resolved` goes through
    /// [`Tenant::resolve_ticket`]; any status but `Open` counts as a first response).
    /// Returns false when there is no such ticket.
    pub fn set_ticket_status(&mut self, ticket_id: &str, status: &str) -> bool {
        if status == "Resolved" {
            return self.resolve_ticket(ticket_id);
        }
        let now = self.tick();
        let d = self.ticket_fraction_digits;
        let Some(t) = self.ticket_mut(ticket_id) else {
            return false;
        };
        if status != "Open" && t.get("firstResponseTime").is_none_or(Value::is_null) {
            respond(t, now, d);
        }
        t.insert("status".into(), json!(status));
        t.insert("updatedTime".into(), json!(fmt_time(now, d)));
        true
    }

    /// Logs time on a ticket at the clock: a new TICKET worklog entry by the ticket's
    /// technician (or the first one), and the ticket's `worklogTimespent` and
    /// `updatedTime` follow. Returns the entry's `itemId`, or `None` for no such ticket.
    pub fn add_worklog(&mut self, ticket_id: &str, rng: &mut StdRng) -> Option<String> {
        let ticket = self.ticket_mut(ticket_id)?.clone();
        let now = self.tick();
        let d = self.ticket_fraction_digits;
        let tech = ticket
            .get("technician")
            .and_then(|t| {
                let uid = t.get("userId").and_then(|u| {
                    u.as_u64()
                        .or_else(|| u.as_str().and_then(|s| s.parse().ok()))
                })?;
                let name = t.get("name").and_then(Value::as_str)?;
                Some((uid, name.to_string()))
            })
            .or_else(|| {
                self.rows(Collection::Technicians).first().and_then(|t| {
                    let uid = t.get("userId").and_then(Value::as_str)?.parse().ok()?;
                    let name = t.get("name").and_then(Value::as_str)?;
                    Some((uid, name.to_string()))
                })
            })
            .unwrap_or((id(3, 0), "Technician".to_string()));
        let display = ticket.get("displayId").cloned().unwrap_or(Value::Null);
        let wl = self.make_worklog(
            rng,
            &tech,
            now,
            json!({"workId": ticket_id, "displayId": display, "module": "TICKET"}),
        );
        let item = wl.get("itemId").and_then(Value::as_str).map(str::to_string);
        let qty = wl.get("qty").and_then(Value::as_str).unwrap_or("0");
        let added = parse_hundredths(qty) * 60 / 100;
        if let Some(list) = self.rows.get_mut(&Collection::Worklogs) {
            list.push(wl);
        }
        if let Some(t) = self.ticket_mut(ticket_id) {
            let spent = t
                .get("worklogTimespent")
                .and_then(Value::as_str)
                .map_or(0, parse_hundredths)
                / 100;
            t.insert(
                "worklogTimespent".into(),
                json!(format!("{}.00", spent + added)),
            );
            t.insert("updatedTime".into(), json!(fmt_time(now, d)));
        }
        item
    }

    /// Removes the row of `collection` whose key ([`Collection::key_field`]) is `id`, as a
    /// deletion in SuperOps does: the object is simply no longer listed (the API has no
    /// deletion feed). Nothing else changes: rows that refer to it (a removed client's
    /// tickets and sites, a removed ticket's worklogs) stay as they are, since the
    /// reference does not say that deletions cascade. Returns false when there is no
    /// such row.
    pub fn remove(&mut self, collection: Collection, id: &str) -> bool {
        let key = collection.key_field();
        let Some(list) = self.rows.get_mut(&collection) else {
            return false;
        };
        let Some(pos) = list
            .iter()
            .position(|r| r.get(key).and_then(Value::as_str).is_some_and(|v| v == id))
        else {
            return false;
        };
        list.remove(pos);
        if collection == Collection::Tickets {
            // Positions after the removed row moved up by one.
            self.ticket_pos = list
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    t.get("ticketId")
                        .and_then(Value::as_str)
                        .map(|s| (s.to_string(), i))
                })
                .collect();
        }
        // Cached scans hold row positions: they are stale now.
        self.generation += 1;
        true
    }

    /// The id of the ticket at position `index` in creation order.
    pub fn ticket_id(&self, index: usize) -> Option<String> {
        self.rows(Collection::Tickets)
            .get(index)
            .and_then(|t| t.get("ticketId"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Advances the virtual clock without changing data.
    pub fn advance(&mut self, seconds: i64) {
        self.clock += Duration::seconds(seconds);
    }

    /// Random generator for mutation helpers, seeded from the tenant seed.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

fn respond(t: &mut Map<String, Value>, now: NaiveDateTime, d: u8) {
    t.insert("firstResponseTime".into(), json!(fmt_time(now, d)));
    let due = t
        .get("firstResponseDueTime")
        .and_then(Value::as_str)
        .and_then(parse_time);
    t.insert(
        "firstResponseViolated".into(),
        due.map_or(Value::Null, |due| json!(now > due)),
    );
}

/// `"1.25"` → 125.
fn parse_hundredths(s: &str) -> i64 {
    let (w, f) = s.split_once('.').unwrap_or((s, "0"));
    let f = format!("{f:0<2}");
    w.parse::<i64>().unwrap_or(0) * 100 + f[..2].parse::<i64>().unwrap_or(0)
}
