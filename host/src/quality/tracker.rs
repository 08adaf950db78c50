//! One stream's figures, gathered as its batches pass through the run.
//!
//! Each record's JSON is parsed once; the schema check is `is_valid` first (the fast path
//! every clean record takes), and only a failing record pays for the error list.
//! Duplicates are found with a set of 64-bit key hashes (8 bytes a key; a false
//! duplicate needs a hash collision, about 1 in 10^7 at ten million keys).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tributary_sdk::host::RecordBatch;

use super::{StreamQuality, ViolationSample, SAMPLES};

/// Messages kept per flagged record (a record can break a schema in many places).
const MESSAGES_PER_RECORD: usize = 10;
/// Longest message kept: a message quotes the offending value, which may be large.
const MESSAGE_CHARS: usize = 200;

/// A cursor value with its instant, when it is a timestamp or a date.
#[derive(Debug, Clone)]
pub struct Cursor {
    text: String,
    time: Option<DateTime<Utc>>,
}

impl Cursor {
    /// Reads a cursor (RFC 3339, `YYYY-MM-DD[ T]HH:MM:SS[.f]` as UTC, or a date).
    pub fn new(text: &str) -> Cursor {
        Cursor {
            text: text.to_string(),
            time: cursor_time(text),
        }
    }

    /// Instants compare as instants (`-08:00` and `Z` alike); anything else as text.
    fn cmp_text(&self, other: &str) -> Ordering {
        // Fast path, the common case: two UTC stamps of one width order as text, with no
        // parsing per record.
        if self.time.is_some()
            && self.text.len() == other.len()
            && self.text.ends_with('Z')
            && other.ends_with('Z')
        {
            return self.text.as_str().cmp(other);
        }
        match (self.time, cursor_time(other)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.text.as_str().cmp(other),
        }
    }
}

/// The instant a cursor names, if it names one (see [`tributary_sdk::cursor_instant`]).
pub fn cursor_time(s: &str) -> Option<DateTime<Utc>> {
    tributary_sdk::cursor_instant(s)
}

/// The newest of the cursors offered.
#[derive(Debug, Default)]
pub struct Newest(Option<Cursor>);

impl Newest {
    /// Keeps `c` if it is newer.
    pub fn offer(&mut self, c: &str) {
        match &self.0 {
            Some(n) if n.cmp_text(c) != Ordering::Less => {}
            _ => self.0 = Some(Cursor::new(c)),
        }
    }

    /// The newest cursor and its age in seconds at `now` (when it is an instant).
    pub fn finish(&self, now: DateTime<Utc>) -> (Option<String>, Option<i64>) {
        match &self.0 {
            None => (None, None),
            Some(c) => (
                Some(c.text.clone()),
                c.time.map(|t| (now - t).num_seconds()),
            ),
        }
    }
}

/// Populated values per top-level field: present, not null, not an empty string.
#[derive(Debug, Default)]
pub struct Completeness {
    /// The previous record's fields in order, with their indexes: records of one stream
    /// mostly share a layout, so a string comparison replaces a hash lookup.
    layout: Vec<(String, usize)>,
    index: HashMap<String, usize>,
    names: Vec<String>,
    populated: Vec<u64>,
    records: u64,
}

impl Completeness {
    /// Starts with the fields a schema declares (`properties`), so a field no record
    /// fills still counts, at 0%.
    pub fn with_schema(schema: Option<&Value>) -> Completeness {
        let mut c = Completeness::default();
        if let Some(props) = schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
        {
            for name in props.keys() {
                c.field(name);
            }
        }
        c
    }

    fn field(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.index.insert(name.to_string(), self.names.len());
        self.names.push(name.to_string());
        self.populated.push(0);
        self.names.len() - 1
    }

    /// Counts one record (a JSON object; anything else populates nothing).
    pub fn record(&mut self, value: &Value) {
        self.records += 1;
        if let Value::Object(map) = value {
            for (j, (k, v)) in map.iter().enumerate() {
                let filled = match v {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                };
                if !filled {
                    continue;
                }
                let i = match self.layout.get(j) {
                    Some((name, i)) if name == k => *i,
                    _ => {
                        let i = self.field(k);
                        if j < self.layout.len() {
                            self.layout[j] = (k.clone(), i);
                        } else if j == self.layout.len() {
                            self.layout.push((k.clone(), i));
                        }
                        i
                    }
                };
                self.populated[i] += 1;
            }
        }
    }

    /// Records counted.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// (overall, per field); overall is `None` without records or fields.
    pub fn finish(&self) -> (Option<f64>, BTreeMap<String, f64>) {
        if self.records == 0 {
            return (None, BTreeMap::new());
        }
        let n = self.records as f64;
        let fields = self
            .names
            .iter()
            .zip(&self.populated)
            .map(|(name, &p)| (name.clone(), p as f64 / n))
            .collect();
        let cells = n * self.names.len() as f64;
        let overall = (cells > 0.0).then(|| self.populated.iter().sum::<u64>() as f64 / cells);
        (overall, fields)
    }
}

/// A hasher for values that are already hashes.
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A fixed-key hash of a primary key: the same key always gives the same hash.
fn key_hash(pk: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    pk.hash(&mut h);
    h.finish()
}

/// Follows one stream through a run.
pub struct StreamTracker {
    validator: Option<jsonschema::Validator>,
    completeness: Completeness,
    deleted: u64,
    violations: u64,
    samples: Vec<ViolationSample>,
    keys: HashSet<u64, BuildHasherDefault<KeyHash>>,
    duplicates: u64,
    watermark: Option<Cursor>,
    regressions: u64,
    newest: Newest,
}

/// One message of a flagged record, as the `_violations` column holds it.
#[derive(serde::Serialize)]
struct Flag<'a> {
    path: &'a str,
    message: &'a str,
}

impl StreamTracker {
    /// A tracker validating against `schema` (compiled here, once). `watermark`: the
    /// newest cursor in the warehouse when an unnarrowed incremental read began; records
    /// older than it count as cursor regressions. `Err` when the schema does not compile
    /// (a plugin bug): the caller tracks without validation.
    pub fn new(schema: Option<&Value>, watermark: Option<&str>) -> Result<Self, String> {
        let validator = schema
            .map(jsonschema::validator_for)
            .transpose()
            .map_err(|e| format!("the stream's JSON Schema does not compile: {e}"))?;
        let mut newest = Newest::default();
        // Freshness counts what the warehouse had too: a run with nothing new is no
        // fresher or staler than the last one.
        if let Some(w) = watermark {
            newest.offer(w);
        }
        Ok(StreamTracker {
            validator,
            completeness: Completeness::with_schema(schema),
            deleted: 0,
            violations: 0,
            samples: Vec::new(),
            keys: HashSet::default(),
            duplicates: 0,
            watermark: watermark.map(Cursor::new),
            regressions: 0,
            newest,
        })
    }

    /// Measures a batch; returns the flags of the records that broke the schema:
    /// (index in the batch, JSON array of `{path, message}`), in index order.
    pub fn observe(&mut self, batch: &RecordBatch) -> Vec<(usize, String)> {
        let mut flags = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            if !self.keys.insert(key_hash(r.pk)) {
                self.duplicates += 1;
            }
            if r.deleted {
                // A deletion marker carries what the source had left; not measured.
                self.deleted += 1;
                continue;
            }
            if let Some(c) = r.cursor {
                if self
                    .watermark
                    .as_ref()
                    .is_some_and(|w| w.cmp_text(c) == Ordering::Greater)
                {
                    self.regressions += 1;
                }
                self.newest.offer(c);
            }
            let value = match serde_json::from_str::<Value>(r.data) {
                Ok(v) => v,
                Err(e) => {
                    self.completeness.record(&Value::Null);
                    let message = format!("the record is not valid JSON: {e}");
                    flags.push((i, self.flag(r.pk, vec![(String::new(), message)])));
                    continue;
                }
            };
            self.completeness.record(&value);
            let Some(validator) = &self.validator else {
                continue;
            };
            if validator.is_valid(&value) {
                continue;
            }
            let found: Vec<(String, String)> = validator
                .iter_errors(&value)
                .take(MESSAGES_PER_RECORD)
                .map(|e| {
                    let mut message = e.to_string();
                    if let Some((at, _)) = message.char_indices().nth(MESSAGE_CHARS) {
                        message.truncate(at);
                        message.push('…');
                    }
                    (e.instance_path().as_str().to_string(), message)
                })
                .collect();
            flags.push((i, self.flag(r.pk, found)));
        }
        flags
    }

    /// Counts a flagged record, keeps its first message as a sample, and returns the
    /// `_violations` value.
    fn flag(&mut self, pk: &str, found: Vec<(String, String)>) -> String {
        self.violations += 1;
        if self.samples.len() < SAMPLES {
            if let Some((path, message)) = found.first() {
                self.samples.push(ViolationSample {
                    pk: pk.to_string(),
                    path: path.clone(),
                    message: message.clone(),
                });
            }
        }
        let flags: Vec<Flag<'_>> = found
            .iter()
            .map(|(path, message)| Flag { path, message })
            .collect();
        serde_json::to_string(&flags).unwrap_or_else(|_| "[]".to_string())
    }

    /// The figures so far.
    pub fn report(&self, source: &str, stream: &str, now: DateTime<Utc>) -> StreamQuality {
        let (completeness, fields) = self.completeness.finish();
        let (newest_cursor, freshness_seconds) = self.newest.finish(now);
        StreamQuality {
            source: source.to_string(),
            stream: stream.to_string(),
            records: self.completeness.records,
            deleted: self.deleted,
            completeness,
            fields,
            violations: self.violations,
            violation_samples: self.samples.clone(),
            duplicates: Some(self.duplicates),
            cursor_regressions: self.watermark.as_ref().map(|_| self.regressions),
            newest_cursor,
            freshness_seconds,
        }
    }
}
