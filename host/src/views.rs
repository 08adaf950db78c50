//! `client_360`: one row per client profile, joining what the three sources say about it.
//!
//! The view is written once here for both SQL warehouses; a [`Dialect`] spells the few
//! things SQLite and PostgreSQL say differently (JSON access, booleans, dates, rounding).
//! Table names come from the manifest's sources (by plugin), so a source called `psa`
//! works as well as one called `superops`. A table not written yet is replaced by an
//! empty one of the same shape, so the view exists from the first run and fills in as
//! sources are synced. Every column and formula is documented in `docs/warehouse.md`.

use std::collections::BTreeMap;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::clients::{Client, Directory};
use crate::destination::{table_name, ViewRows};

/// The view's name.
pub const CLIENT_360: &str = "client_360";

/// The SQL spoken by a warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.38+ (JSON functions built in).
    Sqlite,
    /// PostgreSQL 12+ (`jsonb`).
    Postgres,
}

impl Dialect {
    /// `json` at `path` (`a.b`) as text, or NULL.
    fn text(self, json: &str, path: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(json_extract({json}, '$.{path}') AS TEXT)"),
            Dialect::Postgres => format!("({json} #>> '{{{}}}')", path.replace('.', ",")),
        }
    }

    /// `json` at `path` as a number (numbers and numeric strings alike), or NULL.
    fn num(self, json: &str, path: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST(json_extract({json}, '$.{path}') AS REAL)"),
            Dialect::Postgres => format!(
                "CAST(({json} #>> '{{{}}}') AS double precision)",
                path.replace('.', ",")
            ),
        }
    }

    /// Whether `json` at `path` is the JSON boolean `value`.
    fn is(self, json: &str, path: &str, value: bool) -> String {
        match self {
            Dialect::Sqlite => format!(
                "(json_type({json}, '$.{path}') = '{}')",
                if value { "true" } else { "false" }
            ),
            Dialect::Postgres => format!(
                "(jsonb_typeof({json} #> '{{{p}}}') = 'boolean' AND ({json} #>> '{{{p}}}') = '{v}')",
                p = path.replace('.', ","),
                v = value
            ),
        }
    }

    /// Rows of `alias` that are not marked deleted.
    fn live(self, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{alias}._deleted = 0"),
            Dialect::Postgres => format!("NOT {alias}._deleted"),
        }
    }

    fn round2(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("ROUND({expr}, 2)"),
            Dialect::Postgres => {
                format!("CAST(ROUND(CAST({expr} AS numeric), 2) AS double precision)")
            }
        }
    }

    /// Whole days from the date `expr` (`YYYY-MM-DD…`) to today (UTC).
    fn days_since(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => {
                format!(
                    "CAST(julianday(date('now')) - julianday(substr({expr}, 1, 10)) AS INTEGER)"
                )
            }
            Dialect::Postgres => format!(
                "(CAST((now() AT TIME ZONE 'UTC') AS date) - CAST(substr({expr}, 1, 10) AS date))"
            ),
        }
    }

    /// Whether the RFC 3339 instant `expr` lies within the last `days` days.
    fn within_days(self, expr: &str, days: u32) -> String {
        match self {
            Dialect::Sqlite => format!("julianday({expr}) >= julianday('now', '-{days} days')"),
            Dialect::Postgres => {
                format!("CAST({expr} AS timestamptz) >= now() - interval '{days} days'")
            }
        }
    }

    /// Today (UTC) as `YYYY-MM-DD` text.
    fn today(self) -> &'static str {
        match self {
            Dialect::Sqlite => "date('now')",
            Dialect::Postgres => "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        }
    }

    /// A FROM item: the elements of the `Line` array of `alias`, as `line.value`.
    fn lines(self, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({alias}.data, '$.Line') AS line"),
            Dialect::Postgres => format!(
                "jsonb_array_elements(CASE WHEN jsonb_typeof({alias}.data -> 'Line') = 'array' THEN {alias}.data -> 'Line' ELSE '[]'::jsonb END) AS line(value)"
            ),
        }
    }

    /// An empty stand-in for a stream table that does not exist yet.
    fn empty_table(self) -> &'static str {
        match self {
            Dialect::Sqlite => "(SELECT NULL AS _pk, 0 AS _deleted, NULL AS data WHERE 0)",
            Dialect::Postgres => {
                "(SELECT CAST(NULL AS text) AS _pk, false AS _deleted, CAST(NULL AS jsonb) AS data WHERE false)"
            }
        }
    }
}

/// The sources `client_360` reads, by name; found by plugin among the manifest's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client360Sources {
    /// The internal-db source (client profiles, satisfaction, engagement, contracts).
    pub internal: String,
    /// The SuperOps source, if any.
    pub superops: Option<String>,
    /// The QuickBooks source, if any.
    pub quickbooks: Option<String>,
}

impl Client360Sources {
    /// From (source name, plugin name, enabled) triples: the first enabled source of each
    /// plugin, else the first of it. `None` without an internal-db source: the view has
    /// one row per client profile, and profiles come from there.
    pub fn find<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str, bool)> + Clone,
    ) -> Option<Client360Sources> {
        let of = |plugin: &str| -> Option<String> {
            let all: Vec<(&str, bool)> = sources
                .clone()
                .into_iter()
                .filter(|(_, p, _)| *p == plugin)
                .map(|(n, _, e)| (n, e))
                .collect();
            all.iter()
                .find(|(_, enabled)| *enabled)
                .or(all.first())
                .map(|(n, _)| n.to_string())
        };
        Some(Client360Sources {
            internal: of("internal-db")?,
            superops: of("superops"),
            quickbooks: of("quickbooks"),
        })
    }

    /// Every table the view reads (whether or not it exists yet).
    pub fn tables(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            "client_profiles",
            "satisfaction_scores",
            "communication_engagement",
            "contracts",
        ]
        .iter()
        .map(|s| table_name(&self.internal, s))
        .collect();
        if let Some(s) = &self.superops {
            out.extend(
                ["tickets", "worklog_entries"]
                    .iter()
                    .map(|t| table_name(s, t)),
            );
        }
        if let Some(q) = &self.quickbooks {
            out.extend(
                ["invoices", "payments", "purchases", "bills"]
                    .iter()
                    .map(|t| table_name(q, t)),
            );
        }
        out
    }
}

/// `CREATE VIEW client_360 AS …` in `dialect`; `exists` says which tables are there.
pub fn client_360_sql(
    d: Dialect,
    sources: &Client360Sources,
    exists: &dyn Fn(&str) -> bool,
) -> String {
    let table = |source: Option<&String>, stream: &str| -> String {
        match source.map(|s| table_name(s, stream)) {
            Some(t) if exists(&t) => format!("\"{t}\""),
            _ => d.empty_table().to_string(),
        }
    };
    let internal = Some(&sources.internal);
    let so = sources.superops.as_ref();
    let qb = sources.quickbooks.as_ref();
    let t = |alias: &str, path: &str| d.text(&format!("{alias}.data"), path);
    let n = |alias: &str, path: &str| d.num(&format!("{alias}.data"), path);
    let live = |alias: &str| d.live(alias);
    let r = |e: &str| d.round2(e);
    let closed = format!("{} IN ('Resolved', 'Closed')", t("t", "status"));
    let line_customer = format!(
        "COALESCE({}, {})",
        d.text(
            "line.value",
            "AccountBasedExpenseLineDetail.CustomerRef.value"
        ),
        d.text("line.value", "ItemBasedExpenseLineDetail.CustomerRef.value")
    );
    // A figure of a system the client is not in is NULL, not 0.
    let in_so = |e: &str| format!("CASE WHEN p.superops_account_id IS NULL THEN NULL ELSE {e} END");
    let in_qb =
        |e: &str| format!("CASE WHEN p.quickbooks_customer_id IS NULL THEN NULL ELSE {e} END");
    format!(
        "CREATE VIEW {CLIENT_360} AS
WITH profiles AS (
    SELECT {pid} AS client_id, {name} AS company_name, {tier} AS service_tier,
           {manager} AS account_manager, {status} AS status,
           {so_id} AS superops_account_id, {qb_id} AS quickbooks_customer_id
    FROM {profiles_t} p WHERE {live_p}
), tickets AS (
    SELECT {t_client} AS account,
           SUM(CASE WHEN {closed} THEN 0 ELSE 1 END) AS open_tickets,
           SUM(CASE WHEN {closed} THEN 1 ELSE 0 END) AS resolved_tickets,
           SUM(CASE WHEN {fr_true} OR {fr_false} THEN 1 ELSE 0 END) AS fr_measured,
           SUM(CASE WHEN {fr_false} THEN 1 ELSE 0 END) AS fr_met,
           SUM(CASE WHEN {res_true} OR {res_false} THEN 1 ELSE 0 END) AS res_measured,
           SUM(CASE WHEN {res_false} THEN 1 ELSE 0 END) AS res_met
    FROM {tickets_t} t WHERE {live_t}
    GROUP BY {t_client}
), worklogs AS (
    SELECT {t_client} AS account, SUM({qty}) AS hours,
           SUM(CASE WHEN {billable} THEN {qty} ELSE 0 END) AS billable_hours
    FROM {worklogs_t} w JOIN {tickets_t} t ON t._pk = {work_id}
    WHERE {live_w} AND {live_t} AND {module} = 'TICKET'
    GROUP BY {t_client}
), invoices AS (
    SELECT {i_customer} AS customer, SUM({i_total}) AS invoiced, SUM({i_balance}) AS open_balance
    FROM {invoices_t} i WHERE {live_i}
    GROUP BY {i_customer}
), payments AS (
    SELECT {pay_customer} AS customer, SUM({pay_total}) AS paid, MAX({pay_date}) AS last_payment_date
    FROM {payments_t} pay WHERE {live_pay}
    GROUP BY {pay_customer}
), expenses AS (
    SELECT {line_customer} AS customer, SUM({line_amount}) AS expenses
    FROM (SELECT x.data FROM {purchases_t} x WHERE {live_x}
          UNION ALL SELECT b.data FROM {bills_t} b WHERE {live_b}) e, {lines}
    GROUP BY {line_customer}
), satisfaction AS (
    SELECT client_id, AVG(overall) AS avg_overall, AVG(nps) AS avg_nps,
           MAX(CASE WHEN newest = 1 THEN overall END) AS latest_overall,
           MAX(CASE WHEN newest = 1 THEN nps END) AS latest_nps
    FROM (SELECT {s_client} AS client_id, {s_overall} AS overall, {s_nps} AS nps,
                 ROW_NUMBER() OVER (PARTITION BY {s_client} ORDER BY {s_date} DESC, s._pk DESC) AS newest
          FROM {satisfaction_t} s WHERE {live_s}) surveys
    GROUP BY client_id
), engagement AS (
    SELECT {c_client} AS client_id, COUNT(*) AS engagements_90d
    FROM {engagement_t} c WHERE {live_c} AND {recent}
    GROUP BY {c_client}
), contracts AS (
    SELECT {k_client} AS client_id,
           SUM(CASE WHEN {k_status} = 'active' THEN {k_value} ELSE 0 END) AS monthly_value,
           MIN(CASE WHEN {k_status} = 'active' AND {k_renewal} >= {today} THEN {k_renewal} END) AS next_renewal_date
    FROM {contracts_t} k WHERE {live_k}
    GROUP BY {k_client}
)
SELECT p.client_id, p.company_name, p.service_tier, p.account_manager, p.status,
       p.superops_account_id, p.quickbooks_customer_id,
       {open_tickets} AS open_tickets,
       {resolved_tickets} AS resolved_tickets,
       CASE WHEN tk.fr_measured > 0 THEN {fr_rate} END AS first_response_sla,
       CASE WHEN tk.res_measured > 0 THEN {res_rate} END AS resolution_sla,
       {worklog_hours} AS worklog_hours,
       CASE WHEN wl.hours > 0 THEN {billable_share} END AS billable_share,
       {invoiced} AS invoiced,
       {paid} AS paid,
       {open_balance} AS open_balance,
       {expenses} AS expenses,
       {days_since_payment} AS days_since_last_payment,
       {latest_sat} AS latest_satisfaction,
       {avg_sat} AS avg_satisfaction,
       sa.latest_nps AS latest_nps,
       {avg_nps} AS avg_nps,
       COALESCE(en.engagements_90d, 0) AS engagements_90d,
       {contract_value} AS contract_monthly_value,
       ct.next_renewal_date AS next_renewal_date
FROM profiles p
LEFT JOIN tickets tk ON tk.account = p.superops_account_id
LEFT JOIN worklogs wl ON wl.account = p.superops_account_id
LEFT JOIN invoices inv ON inv.customer = p.quickbooks_customer_id
LEFT JOIN payments pm ON pm.customer = p.quickbooks_customer_id
LEFT JOIN expenses ex ON ex.customer = p.quickbooks_customer_id
LEFT JOIN satisfaction sa ON sa.client_id = p.client_id
LEFT JOIN engagement en ON en.client_id = p.client_id
LEFT JOIN contracts ct ON ct.client_id = p.client_id
ORDER BY length(p.client_id), p.client_id",
        pid = t("p", "id"),
        name = t("p", "company_name"),
        tier = t("p", "service_tier"),
        manager = t("p", "account_manager"),
        status = t("p", "status"),
        so_id = t("p", "superops_account_id"),
        qb_id = t("p", "quickbooks_customer_id"),
        profiles_t = table(internal, "client_profiles"),
        live_p = live("p"),
        t_client = t("t", "client.accountId"),
        fr_true = d.is("t.data", "firstResponseViolated", true),
        fr_false = d.is("t.data", "firstResponseViolated", false),
        res_true = d.is("t.data", "resolutionViolated", true),
        res_false = d.is("t.data", "resolutionViolated", false),
        tickets_t = table(so, "tickets"),
        live_t = live("t"),
        qty = n("w", "qty"),
        billable = d.is("w.data", "billable", true),
        worklogs_t = table(so, "worklog_entries"),
        work_id = t("w", "workItem.workId"),
        live_w = live("w"),
        module = t("w", "workItem.module"),
        i_customer = t("i", "CustomerRef.value"),
        i_total = n("i", "TotalAmt"),
        i_balance = n("i", "Balance"),
        invoices_t = table(qb, "invoices"),
        live_i = live("i"),
        pay_customer = t("pay", "CustomerRef.value"),
        pay_total = n("pay", "TotalAmt"),
        pay_date = t("pay", "TxnDate"),
        payments_t = table(qb, "payments"),
        live_pay = live("pay"),
        line_amount = d.num("line.value", "Amount"),
        purchases_t = table(qb, "purchases"),
        bills_t = table(qb, "bills"),
        live_x = live("x"),
        live_b = live("b"),
        lines = d.lines("e"),
        s_client = t("s", "client_id"),
        s_overall = n("s", "overall"),
        s_nps = n("s", "nps"),
        s_date = t("s", "survey_date"),
        satisfaction_t = table(internal, "satisfaction_scores"),
        live_s = live("s"),
        c_client = t("c", "client_id"),
        engagement_t = table(internal, "communication_engagement"),
        live_c = live("c"),
        recent = d.within_days(&t("c", "occurred_at"), 90),
        k_client = t("k", "client_id"),
        k_status = t("k", "status"),
        k_value = n("k", "monthly_value"),
        k_renewal = t("k", "renewal_date"),
        today = d.today(),
        contracts_t = table(internal, "contracts"),
        live_k = live("k"),
        open_tickets = in_so("COALESCE(tk.open_tickets, 0)"),
        resolved_tickets = in_so("COALESCE(tk.resolved_tickets, 0)"),
        fr_rate = r("1.0 * tk.fr_met / tk.fr_measured"),
        res_rate = r("1.0 * tk.res_met / tk.res_measured"),
        worklog_hours = in_so(&r("COALESCE(wl.hours, 0)")),
        billable_share = r("wl.billable_hours / wl.hours"),
        invoiced = in_qb(&r("COALESCE(inv.invoiced, 0)")),
        paid = in_qb(&r("COALESCE(pm.paid, 0)")),
        open_balance = in_qb(&r("COALESCE(inv.open_balance, 0)")),
        expenses = in_qb(&r("COALESCE(ex.expenses, 0)")),
        days_since_payment = d.days_since("pm.last_payment_date"),
        latest_sat = r("sa.latest_overall"),
        avg_sat = r("sa.avg_overall"),
        avg_nps = r("sa.avg_nps"),
        contract_value = r("COALESCE(ct.monthly_value, 0)"),
    )
}

impl ViewRows {
    /// The rows as JSON objects, columns in view order.
    pub fn to_objects(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// The rows of `client_360` for the `wanted` clients (all when empty), found by id, by
/// SuperOps or QuickBooks id, or by name, like `run --client`.
pub fn select_clients(rows: ViewRows, wanted: &[String]) -> Result<ViewRows, String> {
    if wanted.is_empty() {
        return Ok(rows);
    }
    let text = |row: &[serde_json::Value], col: Option<usize>| -> Option<String> {
        match row.get(col?)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let (id, name) = (rows.column("client_id"), rows.column("company_name"));
    let (so, qb) = (
        rows.column("superops_account_id"),
        rows.column("quickbooks_customer_id"),
    );
    let directory = Directory {
        origin: CLIENT_360.to_string(),
        clients: rows
            .rows
            .iter()
            .filter_map(|row| {
                let key = text(row, id)?;
                let mut ids = BTreeMap::new();
                ids.extend(text(row, so).map(|v| ("superops".to_string(), v)));
                ids.extend(text(row, qb).map(|v| ("quickbooks".to_string(), v)));
                Some(Client {
                    name: text(row, name).unwrap_or_else(|| key.clone()),
                    key,
                    ids,
                })
            })
            .collect(),
    };
    let mut keep = Vec::new();
    let mut problems = Vec::new();
    for w in wanted {
        match directory.resolve(w) {
            Ok(c) if !keep.contains(&c.key) => keep.push(c.key.clone()),
            Ok(_) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let selected = rows
        .rows
        .iter()
        .filter(|row| text(row, id).is_some_and(|k| keep.contains(&k)))
        .cloned()
        .collect();
    Ok(ViewRows {
        columns: rows.columns.clone(),
        rows: selected,
    })
}

/// A terminal rendering: a table of the headline columns, or every column of each client
/// as `column  value` lines when there are at most three.
pub fn render(rows: &ViewRows) -> String {
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "–".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => format!("{x:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    if rows.rows.is_empty() {
        return "no client".to_string();
    }
    if rows.rows.len() <= 3 {
        let width = rows.columns.iter().map(|c| c.len()).max().unwrap_or(0);
        let mut out = String::new();
        for row in &rows.rows {
            for (c, v) in rows.columns.iter().zip(row) {
                out.push_str(&format!("{c:<width$}  {}\n", show(v)));
            }
            out.push('\n');
        }
        return out.trim_end().to_string();
    }
    const HEADLINE: [(&str, &str); 13] = [
        ("client_id", "id"),
        ("company_name", "client"),
        ("service_tier", "tier"),
        ("open_tickets", "open"),
        ("resolved_tickets", "resolved"),
        ("resolution_sla", "res. SLA"),
        ("worklog_hours", "hours"),
        ("invoiced", "invoiced"),
        ("paid", "paid"),
        ("open_balance", "balance"),
        ("avg_satisfaction", "CSAT"),
        ("avg_nps", "NPS"),
        ("contract_monthly_value", "contract/mo"),
    ];
    let cols: Vec<(usize, &str)> = HEADLINE
        .iter()
        .filter_map(|(name, label)| Some((rows.column(name)?, *label)))
        .collect();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(cols.iter().map(|(_, label)| *label));
    for row in &rows.rows {
        table.add_row(cols.iter().map(|(i, _)| {
            let v = row.get(*i).unwrap_or(&serde_json::Value::Null);
            let cell = Cell::new(show(v));
            if v.is_number() {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    format!(
        "{table}\n{} client(s); `--json` or `--client X` shows every column",
        rows.rows.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_found_by_plugin_preferring_enabled_ones() {
        let found = Client360Sources::find([
            ("old", "internal-db", false),
            ("crm", "internal-db", true),
            ("psa", "superops", false),
        ])
        .unwrap();
        assert_eq!(found.internal, "crm");
        assert_eq!(found.superops.as_deref(), Some("psa"));
        assert_eq!(found.quickbooks, None);
        assert!(Client360Sources::find([("psa", "superops", true)]).is_none());
    }

    #[test]
    fn missing_tables_become_empty_ones() {
        let sources = Client360Sources {
            internal: "internal".into(),
            superops: None,
            quickbooks: Some("qbo".into()),
        };
        let sql = client_360_sql(Dialect::Sqlite, &sources, &|t| {
            t == "internal__client_profiles"
        });
        assert!(sql.contains("\"internal__client_profiles\""));
        assert!(!sql.contains("\"qbo__invoices\""));
        assert!(sql.contains("WHERE 0"));
    }
}
