//! The small realistic changes of the mutation timer (and of `Emulator::mutate`): an
//! invoice's balance moves or a customer is renamed (updates), a payment comes in
//! (create), and now and then a payment or invoice is deleted, so CDC tombstones and
//! deletion webhooks get exercised. Each goes through the [`Store`] methods the tests'
//! mutations use, so queries, CDC and webhooks all see it the same way.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::data::Store;
use crate::mutate::{Change, Operation};

/// Percent of changes of each kind, in order: invoice balance, customer name, new
/// payment; the rest are deletions.
const INVOICE_UPDATE: u32 = 40;
const CUSTOMER_UPDATE: u32 = 60;
const PAYMENT_CREATE: u32 = 90;

/// A random live id of `entity`.
fn pick(store: &Store, entity: &str, rng: &mut StdRng) -> Option<String> {
    let n = store.count(entity);
    if n == 0 {
        return None;
    }
    store
        .table(entity)
        .nth(rng.gen_range(0..n))
        .map(|o| o.id.to_string())
}

fn money(cents: i64) -> Value {
    json!(cents as f64 / 100.0)
}

/// Makes one change stamped server-now and says what it was. `None` only when the
/// company has nothing at all to change (not even a way to create a payment).
pub fn random_change(store: &mut Store, rng: &mut StdRng) -> Option<Change> {
    let now = store.clock.now();
    let roll = rng.gen_range(0..100);
    let change = |entity: &str, id: String, operation| Change {
        entity: entity.to_string(),
        id,
        operation,
    };
    if roll < INVOICE_UPDATE {
        if let Some(id) = pick(store, "Invoice", rng) {
            let share = rng.gen_range(0..=100);
            // A part payment or a correction: the open balance moves within the total.
            let done = store.edit_at("Invoice", &id, now, |v| {
                let total = v.get("TotalAmt").and_then(Value::as_f64).unwrap_or(0.0);
                let cents = (total * 100.0).round() as i64;
                v["Balance"] = money(cents * share / 100);
            });
            if done {
                return Some(change("Invoice", id, Operation::Update));
            }
        }
    } else if roll < CUSTOMER_UPDATE {
        if let Some(id) = pick(store, "Customer", rng) {
            let n = rng.gen_range(2..100);
            let done = store.edit_at("Customer", &id, now, |v| {
                let company = v
                    .get("CompanyName")
                    .and_then(Value::as_str)
                    .unwrap_or("Customer")
                    .to_string();
                let display = format!("{company} (site {n}) #{}", v["Id"].as_str().unwrap_or(""));
                v["DisplayName"] = json!(display);
            });
            if done {
                return Some(change("Customer", id, Operation::Update));
            }
        }
    } else if roll >= PAYMENT_CREATE {
        let entity = if rng.gen_bool(0.5) {
            "Payment"
        } else {
            "Invoice"
        };
        if let Some(id) = pick(store, entity, rng) {
            if store.delete(entity, &id) {
                return Some(change(entity, id, Operation::Delete));
            }
        }
    }
    // A new payment: the roll asked for one, or its target table was empty.
    let id = store.create("Payment")?;
    Some(change("Payment", id, Operation::Create))
}
