//! `--client <id|name>`: one client, followed across every source.
//!
//! Each source knows a client by its own id (a profile id in the MSP's database, an
//! `accountId` in SuperOps, a customer `Id` in QuickBooks). The *directory* ties them
//! together: the manifest's `[clients]` table when it has one, else the `client_profiles`
//! stream of the manifest's internal-db source, read live through its plugin (so it is
//! never staler than the database). A wanted client is found by any of its ids or by its
//! name, and every selected source is narrowed to that client's id there. Without a
//! directory the values are taken as each source's own ids, as they always were.

use std::collections::BTreeMap;
use std::sync::Arc;

use tributary_sdk::host::CollectingHandler;
use tributary_sdk::{ConfiguredCatalog, ConfiguredStream, ReadRequest, SyncMode, Window};

use crate::plan::SourcePlan;

/// The column of `client_profiles` holding a client's id in the sources of each plugin.
pub const PROFILE_COLUMNS: [(&str, &str); 3] = [
    ("internal-db", "id"),
    ("superops", "superops_account_id"),
    ("quickbooks", "quickbooks_customer_id"),
];

/// The stream the internal-db plugin lists its clients in.
pub const PROFILES_STREAM: &str = "client_profiles";

/// One client as every source knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Display name.
    pub name: String,
    /// Its id in the directory (a profile id; the name for a `[clients]` entry).
    pub key: String,
    /// Source name → the client's id there (absent: unknown to that source).
    pub ids: BTreeMap<String, String>,
}

impl Client {
    fn label(&self) -> String {
        if self.key == self.name {
            self.name.clone()
        } else {
            format!("{} (id {})", self.name, self.key)
        }
    }
}

/// Every client the directory lists, and where the list came from.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// `[clients]` or `source.client_profiles`, for messages.
    pub origin: String,
    /// In directory order.
    pub clients: Vec<Client>,
}

/// Why a wanted client could not be resolved. Nothing has been written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No client has this id or name.
    #[error("--client {wanted}: no client in {origin} has this id or name{}", hint(.suggestions, "; similar names"))]
    Unknown {
        /// As given.
        wanted: String,
        /// The directory.
        origin: String,
        /// Close names, best first.
        suggestions: Vec<String>,
    },
    /// Several clients match; the candidates are listed.
    #[error("--client {wanted}: ambiguous in {origin}, it matches {}: {}; give the id or the full name", .candidates.len(), .candidates.join(", "))]
    Ambiguous {
        /// As given.
        wanted: String,
        /// The directory.
        origin: String,
        /// Every match, labelled with its id.
        candidates: Vec<String>,
    },
}

fn hint(list: &[String], what: &str) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!("{what}: {}", list.join(", "))
    }
}

impl Directory {
    /// The manifest's `[clients]`: name → source name → id.
    pub fn from_table(table: &BTreeMap<String, BTreeMap<String, String>>) -> Directory {
        Directory {
            origin: "[clients]".to_string(),
            clients: table
                .iter()
                .map(|(name, ids)| Client {
                    name: name.clone(),
                    key: name.clone(),
                    ids: ids.clone(),
                })
                .collect(),
        }
    }

    /// `client_profiles` records (JSON objects) read from `origin`; `sources` pairs each
    /// source name with the profile column holding its ids (see [`PROFILE_COLUMNS`]).
    pub fn from_profiles(
        origin: &str,
        profiles: &[serde_json::Value],
        sources: &[(String, &str)],
    ) -> Directory {
        let text = |v: &serde_json::Value, field: &str| -> Option<String> {
            match v.get(field)? {
                serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().into()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let clients = profiles
            .iter()
            .filter_map(|p| {
                let key = text(p, "id")?;
                Some(Client {
                    name: text(p, "company_name").unwrap_or_else(|| key.clone()),
                    ids: sources
                        .iter()
                        .filter_map(|(source, column)| Some((source.clone(), text(p, column)?)))
                        .collect(),
                    key,
                })
            })
            .collect();
        Directory {
            origin: origin.to_string(),
            clients,
        }
    }

    /// The one client `wanted` names: by directory id, by any source's id, by the full
    /// name (ignoring case), else by a part of the name, in that order of preference.
    pub fn resolve(&self, wanted: &str) -> Result<&Client, ResolveError> {
        let w = wanted.trim();
        let folded = w.to_lowercase();
        let tiers: [&dyn Fn(&Client) -> bool; 4] = [
            &|c| c.key == w,
            &|c| c.ids.values().any(|id| id == w),
            &|c| c.name.to_lowercase() == folded,
            &|c| !folded.is_empty() && c.name.to_lowercase().contains(&folded),
        ];
        for matches in tiers {
            let found: Vec<&Client> = self.clients.iter().filter(|c| matches(c)).collect();
            match found.as_slice() {
                [] => continue,
                [one] => return Ok(one),
                many => {
                    return Err(ResolveError::Ambiguous {
                        wanted: w.to_string(),
                        origin: self.origin.clone(),
                        candidates: many.iter().map(|c| c.label()).collect(),
                    })
                }
            }
        }
        let mut close: Vec<(f64, &Client)> = self
            .clients
            .iter()
            .map(|c| (strsim::jaro_winkler(&c.name.to_lowercase(), &folded), c))
            .filter(|(score, _)| *score > 0.8)
            .collect();
        close.sort_by(|a, b| b.0.total_cmp(&a.0));
        Err(ResolveError::Unknown {
            wanted: w.to_string(),
            origin: self.origin.clone(),
            suggestions: close.iter().take(3).map(|(_, c)| c.label()).collect(),
        })
    }
}

/// What narrowing did to the plan, for the run's header.
#[derive(Debug, Default)]
pub struct Narrowed {
    /// The clients found, with their ids per source.
    pub clients: Vec<Client>,
    /// Sources left out: none of the clients exists there.
    pub skipped: Vec<String>,
}

/// Narrows every source of `sources` to the ids of `wanted` there. A source where none of
/// them exists is removed (it has nothing to read for them); a source the directory does
/// not cover is an error, since reading it whole would not be what was asked.
pub fn narrow(
    sources: &mut Vec<SourcePlan>,
    directory: &Directory,
    wanted: &[String],
) -> Result<Narrowed, String> {
    let mut found: Vec<Client> = Vec::new();
    let mut problems = Vec::new();
    for w in wanted {
        match directory.resolve(w) {
            Ok(c) if found.contains(c) => {}
            Ok(c) => found.push(c.clone()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let covered = |source: &str| {
        directory.origin != "[clients]"
            || directory.clients.iter().any(|c| c.ids.contains_key(source))
    };
    for s in sources.iter() {
        let by_plugin = PROFILE_COLUMNS
            .iter()
            .any(|(p, _)| *p == s.plugin.info().name);
        let known = if directory.origin == "[clients]" {
            covered(&s.name)
        } else {
            by_plugin
        };
        if !known {
            problems.push(format!(
                "source `{}` (plugin {}): {} has no ids for it; add them under [clients], or leave it out with --source",
                s.name,
                s.plugin.info().name,
                directory.origin
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let mut skipped = Vec::new();
    sources.retain_mut(|s| {
        let ids: Vec<String> = found
            .iter()
            .filter_map(|c| c.ids.get(&s.name).cloned())
            .collect();
        if ids.is_empty() {
            skipped.push(s.name.clone());
            return false;
        }
        s.window.clients = ids;
        true
    });
    Ok(Narrowed {
        clients: found,
        skipped,
    })
}

/// Reads `client_profiles` from an internal-db source through its plugin: every live
/// profile, whole, with no window and no state (nothing is written). `None` when the
/// database has no such table.
pub fn read_profiles(source: &SourcePlan) -> Result<Option<Vec<serde_json::Value>>, String> {
    let fail = |e: String| format!("cannot read {}.{PROFILES_STREAM}: {e}", source.name);
    let catalog = source
        .plugin
        .discover(&source.config, CollectingHandler::new())
        .map_err(|e| fail(e.to_string()))?;
    if !catalog.streams.iter().any(|s| s.name == PROFILES_STREAM) {
        return Ok(None);
    }
    let request = ReadRequest {
        config: source.config.clone(),
        catalog: ConfiguredCatalog {
            streams: vec![ConfiguredStream {
                name: PROFILES_STREAM.to_string(),
                sync_mode: SyncMode::FullRefresh,
            }],
        },
        state: BTreeMap::new(),
        window: Window::default(),
    };
    let handler = CollectingHandler::new();
    source
        .plugin
        .read(&request, Arc::clone(&handler) as _)
        .map_err(|e| fail(e.to_string()))?;
    let collected = handler.collected();
    let records = collected
        .records
        .get(PROFILES_STREAM)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut live: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for r in records {
        if r.deleted {
            live.remove(r.pk.as_str());
            continue;
        }
        let value = serde_json::from_str(&r.data).map_err(|e| fail(e.to_string()))?;
        live.insert(r.pk.as_str(), value);
    }
    Ok(Some(live.into_values().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn directory() -> Directory {
        let profiles = vec![
            json!({"id": 1, "company_name": "Acme Logistics LLC", "superops_account_id": "900", "quickbooks_customer_id": "1"}),
            json!({"id": 2, "company_name": "Acme Dental Inc.", "superops_account_id": "901", "quickbooks_customer_id": null}),
            json!({"id": 3, "company_name": "Birch Partners", "superops_account_id": null, "quickbooks_customer_id": "3"}),
            json!({"id": 4, "company_name": "Birch Partners", "superops_account_id": "903", "quickbooks_customer_id": "4"}),
        ];
        Directory::from_profiles(
            "internal.client_profiles",
            &profiles,
            &[
                ("internal".to_string(), "id"),
                ("superops".to_string(), "superops_account_id"),
                ("qbo".to_string(), "quickbooks_customer_id"),
            ],
        )
    }

    #[test]
    fn a_client_is_found_by_id_source_id_full_name_or_unique_part() {
        let d = directory();
        assert_eq!(d.resolve("2").unwrap().name, "Acme Dental Inc.");
        assert_eq!(d.resolve("900").unwrap().key, "1");
        assert_eq!(d.resolve("acme logistics llc").unwrap().key, "1");
        assert_eq!(d.resolve("dental").unwrap().key, "2");
        let ids = &d.resolve("1").unwrap().ids;
        assert_eq!(ids.get("superops").map(String::as_str), Some("900"));
        assert_eq!(ids.get("qbo").map(String::as_str), Some("1"));
    }

    #[test]
    fn an_ambiguous_name_lists_every_candidate_with_its_id() {
        let d = directory();
        match d.resolve("acme") {
            Err(ResolveError::Ambiguous { candidates, .. }) => assert_eq!(
                candidates,
                ["Acme Logistics LLC (id 1)", "Acme Dental Inc. (id 2)"]
            ),
            other => panic!("{other:?}"),
        }
        // Two clients with the same full name: only the id tells them apart.
        let msg = d.resolve("Birch Partners").unwrap_err().to_string();
        assert!(msg.contains("(id 3)") && msg.contains("(id 4)"), "{msg}");
    }

    #[test]
    fn an_unknown_client_names_close_ones() {
        let d = directory();
        match d.resolve("Acne Logistics LLC") {
            Err(ResolveError::Unknown { suggestions, .. }) => {
                assert_eq!(
                    suggestions.first().map(String::as_str),
                    Some("Acme Logistics LLC (id 1)")
                )
            }
            other => panic!("{other:?}"),
        }
        match d.resolve("Zephyr") {
            Err(ResolveError::Unknown { suggestions, .. }) => assert!(suggestions.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_manifest_table_is_a_directory_too() {
        let mut table = BTreeMap::new();
        table.insert(
            "Acme".to_string(),
            BTreeMap::from([("qbo".to_string(), "58".to_string())]),
        );
        let d = Directory::from_table(&table);
        assert_eq!(d.resolve("58").unwrap().name, "Acme");
        assert_eq!(d.resolve("acme").unwrap().ids["qbo"], "58");
    }
}
