//! `GET /`: the status page, and `GET /status.json`, which feeds it.
//!
//! The page is one server-rendered HTML document with inline CSS and a little vanilla
//! JavaScript, so there is no build step. It needs the events token (it shows errors and
//! the live feed): `/?token=…` once, which also sets an HTTP-only cookie so a reload
//! works; the token is embedded for the WebSocket, which browsers cannot give headers.
//!
//! DOM contract (tests and users rely on it): `#sources` is the table of sources, one
//! `tr[data-source="<name>"]` per source (stream rows carry `data-of` and
//! `data-stream`); `#feed` is the live change list, one `li` per event with `data-pk`,
//! `data-stream`, `data-source` and `data-seq`; `#chart` is the throughput chart.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::routes::authorized;
use super::state::ServerState;
use crate::watch::status::{Health, SourceView};

/// Samples kept for the chart: 60 at 5 s, the last five minutes.
const SAMPLES: usize = 60;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const COOKIE: &str = "tributary_token";

/// Records committed per source over the last minutes, sampled from the registry.
#[derive(Debug, Default)]
pub struct Throughput {
    samples: VecDeque<(DateTime<Utc>, BTreeMap<String, u64>)>,
}

/// One point of a source's throughput.
#[derive(Debug, Clone, Serialize)]
pub struct RatePoint {
    /// End of the interval (Unix seconds).
    pub t: i64,
    /// Records per second over the interval.
    pub rate: f64,
}

impl Throughput {
    /// Takes a sample of `sources` at `now` unless the last one is recent.
    pub fn sample(&mut self, now: DateTime<Utc>, sources: &[SourceView]) {
        let due = self
            .samples
            .back()
            .is_none_or(|(at, _)| (now - *at).to_std().unwrap_or_default() >= SAMPLE_EVERY);
        if !due {
            return;
        }
        let totals = sources
            .iter()
            .map(|s| {
                (
                    s.source.clone(),
                    s.streams.values().map(|v| v.records).sum(),
                )
            })
            .collect();
        // One more than the points, since a point is the difference of two samples.
        if self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, totals));
    }

    /// Records per second, per source, between consecutive samples.
    pub fn history(&self) -> BTreeMap<String, Vec<RatePoint>> {
        let mut out: BTreeMap<String, Vec<RatePoint>> = BTreeMap::new();
        for (before, after) in self.samples.iter().zip(self.samples.iter().skip(1)) {
            let secs = (after.0 - before.0).num_milliseconds() as f64 / 1000.0;
            for (source, total) in &after.1 {
                let prior = before.1.get(source).copied().unwrap_or(*total);
                let rate = if secs > 0.0 {
                    total.saturating_sub(prior) as f64 / secs
                } else {
                    0.0
                };
                out.entry(source.clone()).or_default().push(RatePoint {
                    t: after.0.timestamp(),
                    rate,
                });
            }
        }
        out
    }
}

fn sample_now(state: &ServerState) {
    let sources = state.status.snapshot();
    state
        .throughput
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sample(Utc::now(), &sources);
}

/// Samples throughput every few seconds, for as long as the server runs.
pub(super) async fn sample_forever(state: ServerState) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        sample_now(&state);
    }
}

/// The body of `/status.json`.
#[derive(Debug, Serialize)]
pub struct StatusBody {
    /// When this was taken.
    pub now: DateTime<Utc>,
    /// Every source, as the registry has it.
    pub sources: Vec<SourceView>,
    /// Records per second per source, oldest first.
    pub throughput: BTreeMap<String, Vec<RatePoint>>,
    /// The feed's last seq.
    pub last_seq: u64,
    /// WebSocket subscribers connected.
    pub subscribers: usize,
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// `GET /status.json` (token required).
pub(super) async fn status_show(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    if !authorized(&state, &headers, query.token.as_deref()) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    sample_now(&state);
    let throughput = state
        .throughput
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .history();
    Json(StatusBody {
        now: Utc::now(),
        sources: state.status.snapshot(),
        throughput,
        last_seq: state.bus.last_seq(),
        subscribers: state.bus.subscribers(),
    })
    .into_response()
}

/// The page's token cookie, if the request has one.
pub(super) fn token_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `GET /`: the page, or a 401 page without the token.
pub(super) async fn page_show(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    if !authorized(&state, &headers, query.token.as_deref()) {
        return (StatusCode::UNAUTHORIZED, Html(UNAUTHORIZED_PAGE)).into_response();
    }
    let token = &state.config.events_token;
    let mut response = Html(render(&state.status.snapshot(), token, Utc::now())).into_response();
    // A cookie only for a token that is a valid cookie value; else the page still works
    // from the URL.
    let cookie_safe = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
    if query.token.is_some() && cookie_safe {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const UNAUTHORIZED_PAGE: &str =
    "<!doctype html><meta charset=utf-8><title>tributary: unauthorized</title>\
<p>This page needs the events token: open <code>/?token=&lt;token&gt;</code>.</p>";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn health_word(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Ok => "ok",
        Health::Failing => "failing",
    }
}

fn age(now: DateTime<Utc>, at: Option<DateTime<Utc>>) -> String {
    match at {
        None => "never".into(),
        Some(at) => format!("{}s ago", (now - at).num_seconds().max(0)),
    }
}

/// The rows of `#sources` as the server first renders them (the script redraws the same
/// shape from `/status.json`).
fn rows(sources: &[SourceView], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for s in sources {
        let records: u64 = s.streams.values().map(|v| v.records).sum();
        out.push_str(&format!(
            "<tr data-source=\"{name}\" class=\"{health}\"><td>{name}</td><td>{plugin}</td>\
             <td class=\"health\">{health}</td><td>{fresh}</td><td class=\"num\">{records}</td>\
             <td class=\"num\">{fails}</td><td class=\"err\">{error}</td></tr>",
            name = escape(&s.source),
            plugin = escape(&s.plugin),
            health = health_word(s.health),
            fresh = age(now, s.last_success),
            fails = s.consecutive_failures,
            error = escape(s.last_error.as_deref().unwrap_or("")),
        ));
        for (stream, v) in &s.streams {
            out.push_str(&format!(
                "<tr class=\"stream\" data-of=\"{name}\" data-stream=\"{stream}\"><td>↳ {stream}</td>\
                 <td></td><td></td><td>{fresh}</td><td class=\"num\">{records}</td><td></td>\
                 <td class=\"err\">{error}</td></tr>",
                name = escape(&s.source),
                stream = escape(stream),
                fresh = age(now, v.last_success),
                records = v.records,
                error = escape(v.last_error.as_deref().unwrap_or("")),
            ));
        }
    }
    out
}

/// The whole page.
pub fn render(sources: &[SourceView], token: &str, now: DateTime<Utc>) -> String {
    // JSON in a script: `<` escaped so no value can close the element.
    let token_js = serde_json::to_string(token)
        .unwrap_or_else(|_| "\"\"".into())
        .replace('<', "\\u003c");
    // The token first: a source name cannot then smuggle a `{{TOKEN}}` in.
    PAGE.replace("{{TOKEN}}", &token_js)
        .replace("{{ROWS}}", &rows(sources, now))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tributary watch</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.2rem}h2{font-size:1rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.ok .health{color:#17753a}tr.failing .health{color:#b3261e;font-weight:bold}
tr.starting .health{color:#8a6d00}tr.stream td{color:#666;font-size:.9em}
td.err{color:#b3261e;max-width:30rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#chart{width:100%;height:120px;border:1px solid #ddd}
#feed{list-style:none;padding:0;font:12px/1.5 ui-monospace,monospace;max-height:24rem;overflow:auto}
#feed li{border-bottom:1px solid #eee}#feed li.delete{color:#b3261e}
#conn{font-size:.85em;color:#666}
</style></head>
<body>
<h1>tributary watch</h1>
<table id="sources"><thead><tr><th>source</th><th>plugin</th><th>health</th><th>last success</th>
<th>records</th><th>failures</th><th>last error</th></tr></thead>
<tbody>{{ROWS}}</tbody></table>
<h2>Records per second (last 5 minutes)</h2>
<svg id="chart" viewBox="0 0 300 100" preserveAspectRatio="none"></svg>
<div id="legend"></div>
<h2>Live changes <span id="conn">connecting…</span></h2>
<ul id="feed"></ul>
<script>
"use strict";
const TOKEN = {{TOKEN}};
const COLORS = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b"];
const MAX_FEED = 200;
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function age(now, at) { return at ? Math.max(0, Math.round((Date.parse(now) - Date.parse(at)) / 1000)) + "s ago" : "never"; }
function row(cls, attrs, cells) {
  const tr = el("tr", Object.assign({class: cls}, attrs));
  cells.forEach(([c, t]) => tr.appendChild(el("td", c ? {class: c} : {}, t)));
  return tr;
}
function drawTable(s) {
  const body = document.querySelector("#sources tbody");
  const rows = [];
  for (const src of s.sources) {
    const streams = Object.entries(src.streams);
    const records = streams.reduce((n, [, v]) => n + v.records, 0);
    rows.push(row(src.health, {"data-source": src.source}, [["", src.source], ["", src.plugin],
      ["health", src.health], ["", age(s.now, src.last_success)], ["num", String(records)],
      ["num", String(src.consecutive_failures)], ["err", src.last_error || ""]]));
    for (const [name, v] of streams) {
      rows.push(row("stream", {"data-of": src.source, "data-stream": name}, [["", "↳ " + name],
        ["", ""], ["", ""], ["", age(s.now, v.last_success)], ["num", String(v.records)], ["", ""],
        ["err", v.last_error || ""]]));
    }
  }
  body.replaceChildren(...rows);
}
function drawChart(s) {
  const svg = document.getElementById("chart"), legend = document.getElementById("legend");
  const series = Object.entries(s.throughput);
  const max = Math.max(1, ...series.flatMap(([, pts]) => pts.map(p => p.rate)));
  const end = Date.parse(s.now) / 1000, span = 300;
  svg.replaceChildren(); legend.replaceChildren();
  series.forEach(([name, pts], i) => {
    const color = COLORS[i % COLORS.length];
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("fill", "none"); line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "1.5"); line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", pts.map(p => ((p.t - end + span) / span * 300).toFixed(1) + "," +
      (100 - p.rate / max * 95).toFixed(1)).join(" "));
    svg.appendChild(line);
    const last = pts.length ? pts[pts.length - 1].rate.toFixed(1) : "0";
    legend.appendChild(el("span", {style: "color:" + color + ";margin-right:1rem"}, name + " " + last + "/s"));
  });
}
async function poll() {
  try {
    const r = await fetch("/status.json", {headers: {Authorization: "Bearer " + TOKEN}});
    if (r.ok) { const s = await r.json(); drawTable(s); drawChart(s); }
  } catch (e) { /* the next poll retries */ }
}
let lastSeq = null;
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let url = proto + "//" + location.host + "/events?token=" + encodeURIComponent(TOKEN);
  if (lastSeq !== null) url += "&since=" + lastSeq;
  const ws = new WebSocket(url), conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = "connected"; };
  ws.onmessage = (m) => {
    let e; try { e = JSON.parse(m.data); } catch (_) { return; }
    const feed = document.getElementById("feed");
    let li;
    if (e.type === "change") {
      lastSeq = e.seq;
      li = el("li", {"data-pk": e.pk, "data-stream": e.stream, "data-source": e.source,
        "data-seq": String(e.seq), class: e.op}, "#" + e.seq + " " + e.source + "/" + e.stream +
        " " + e.op + " " + e.pk + (e.client ? " client=" + e.client : "") + (e.cursor ? " @" + e.cursor : ""));
    } else if (e.type === "gap") {
      li = el("li", {class: "notice"}, "older events are gone; resuming at #" + e.oldest);
    } else if (e.type === "lagged") {
      li = el("li", {class: "notice"}, "missed " + e.missed + " events; reconnecting");
    } else { return; }
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > MAX_FEED) feed.removeChild(feed.lastChild);
  };
  ws.onclose = () => { conn.textContent = "disconnected, retrying"; setTimeout(connect, 2000); };
}
poll(); setInterval(poll, 2000); connect();
</script>
</body></html>
"##;
