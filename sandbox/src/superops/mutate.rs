//! The small realistic changes of the mutation timer (and of `Emulator::mutate`): a
//! ticket moves along its workflow (status and `updatedTime`), a technician logs time on
//! one (a new worklog entry), and now and then a client opens a new ticket. Each goes
//! through the [`Tenant`] methods tests use, so every list query sees it the same way.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use super::data::Tenant;
use super::schema::Collection;
use crate::mutate::{Change, Operation};

/// Percent of changes of each kind, in order: ticket status, new worklog; the rest are
/// new tickets.
const STATUS_UPDATE: u32 = 60;
const WORKLOG_CREATE: u32 = 90;

/// The next status of a ticket's workflow.
fn next_status(current: &str, rng: &mut StdRng) -> &'static str {
    match current {
        "Open" => "In Progress",
        "In Progress" => ["On Hold", "Waiting on Client", "Resolved"][rng.gen_range(0..3)],
        "Resolved" => "Closed",
        _ => "In Progress",
    }
}

/// A random ticket that is not closed: (id, status).
fn pick_open(tenant: &Tenant, rng: &mut StdRng) -> Option<(String, String)> {
    let live: Vec<(String, String)> = tenant
        .rows(Collection::Tickets)
        .iter()
        .filter_map(|t| {
            let status = t.get("status").and_then(Value::as_str)?;
            let id = t.get("ticketId").and_then(Value::as_str)?;
            (status != "Closed").then(|| (id.to_string(), status.to_string()))
        })
        .collect();
    if live.is_empty() {
        return None;
    }
    live.get(rng.gen_range(0..live.len())).cloned()
}

/// Makes one change at the tenant's clock and says what it was.
pub fn random_change(tenant: &mut Tenant, rng: &mut StdRng) -> Change {
    let roll = rng.gen_range(0..100);
    if roll < WORKLOG_CREATE {
        if let Some((ticket, status)) = pick_open(tenant, rng) {
            if roll < STATUS_UPDATE {
                let next = next_status(&status, rng);
                if tenant.set_ticket_status(&ticket, next) {
                    return Change {
                        entity: "Ticket".into(),
                        id: ticket,
                        operation: Operation::Update,
                    };
                }
            } else if let Some(item) = tenant.add_worklog(&ticket, rng) {
                return Change {
                    entity: "Worklog".into(),
                    id: item,
                    operation: Operation::Create,
                };
            }
        }
    }
    // A new ticket: the roll asked for one, or there was no open ticket to work on.
    let clients = tenant.rows(Collection::Clients).len().max(1);
    let client = rng.gen_range(0..clients);
    Change {
        entity: "Ticket".into(),
        id: tenant.open_ticket(client),
        operation: Operation::Create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superops::TenantSize;
    use rand::SeedableRng;

    #[test]
    fn changes_are_deterministic_for_a_seed_and_visible_in_the_rows() {
        let size = TenantSize {
            tickets: 20,
            ..TenantSize::default()
        };
        let run = || {
            let mut t = Tenant::generate(7, &size, 0);
            let mut rng = StdRng::seed_from_u64(3);
            let changes: Vec<Change> = (0..30).map(|_| random_change(&mut t, &mut rng)).collect();
            (t, changes)
        };
        let (t, a) = run();
        let (_, b) = run();
        assert_eq!(a, b);
        for c in &a {
            let (coll, key) = match c.entity.as_str() {
                "Ticket" => (Collection::Tickets, "ticketId"),
                _ => (Collection::Worklogs, "itemId"),
            };
            assert!(
                t.rows(coll)
                    .iter()
                    .any(|r| r.get(key).and_then(Value::as_str) == Some(c.id.as_str())),
                "{c:?}"
            );
        }
        assert!(a.iter().any(|c| c.entity == "Worklog"));
        assert!(a.iter().any(|c| c.operation == Operation::Update));
    }
}
