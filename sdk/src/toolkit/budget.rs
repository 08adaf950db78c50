//! The client-side request budget per credential: sliding windows per second and per
//! "minute" plus a concurrency cap, shared by every stream (and every source block) that
//! uses the same credential in this process ([`Budget::shared`]).
//!
//! Sliding windows (a log of recent send times) are exact where a token bucket would
//! allow a burst of twice the limit across a window boundary. The long window has a
//! configurable length (so benchmarks can scale the 60-second limit down) and a safety
//! margin ([`Limits::margin`]): the server counts requests when they arrive, we count them
//! when they leave, and a request that left late but arrived early would otherwise make
//! the server see one request too many in its window. A request counts from when it
//! actually leaves ([`Permit::leaving`]), not from when its permit was granted.
//!
//! # Learning from throttles
//!
//! With [`Limits::learn`] set: a server may enforce less than the configured budget
//! (other apps share the limit; an independent implementation may be stricter). After a
//! throttle fault the
//! budget pauses every request of the realm for the wait, and lowers one of its limits for
//! the rest of the run (until the last client of the realm is dropped), judged from what
//! was sent and accepted before the fault:
//!
//! 1. If in the last second we sent fewer requests than the server once accepted in a
//!    second, the per-second limit is not the cause: the long window is full, and its
//!    limit becomes what the server accepted in it.
//! 2. Otherwise, if more requests were in flight than ever succeeded at once, the
//!    concurrency limit becomes one less than that.
//! 3. Otherwise the per-second limit becomes what the server accepted in the last second
//!    (one less if that changes nothing: the cheaper wrong guess; if the window was the
//!    cause, the first fault after the pause shows it, since by then the last second is
//!    nearly empty).
//!
//! A fault for a request sent before the last adjustment carries no news and only waits.
//! After the pause one request goes alone (a probe) until one is answered, so the
//! requests queued behind the pause do not all hit a server that is still full.
//! A server limit below the budget so costs a handful of throttles, not one per request.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Limits of one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Requests per `window` (0 = unlimited).
    pub per_window: u32,
    /// The long window (60 s in production).
    pub window: Duration,
    /// Requests per second (0 = unlimited).
    pub per_second: u32,
    /// Requests in flight (0 = unlimited).
    pub concurrency: u32,
    /// Added to `window` (see the module doc); [`Limits::default_margin`] unless the
    /// API's own clock calls for another.
    pub margin: Duration,
    /// Whether a throttle pauses everyone and lowers a limit (see the module doc);
    /// without it a throttle is only counted.
    pub learn: bool,
}

impl Limits {
    /// 2% of the window, at least 50 ms: well above loopback or LAN jitter, and it costs
    /// at most 2% of the allowed rate.
    pub fn default_margin(window: Duration) -> Duration {
        (window / 50).max(Duration::from_millis(50))
    }
}

/// One request as the budget saw it leave.
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    at: Instant,
    throttled: bool,
}

#[derive(Debug)]
struct Inner {
    /// The limits in force: the configured ones, lowered by throttles.
    limits: Limits,
    log: VecDeque<Sent>,
    next_seq: u64,
    in_flight: u32,
    /// Most requests in flight at once among those that were answered (not throttled).
    max_ok_in_flight: u32,
    adjusted_at: Option<Instant>,
    paused_until: Option<Instant>,
    /// After a throttle, one request goes alone until one is answered: the requests
    /// queued behind a pause would otherwise all hit a server that is still full.
    probing: bool,
    users: usize,
}

/// A shared request budget.
#[derive(Debug)]
pub struct Budget {
    configured: Limits,
    inner: Mutex<Inner>,
    wake: Notify,
    sent: AtomicU64,
    throttles: AtomicU64,
}

/// What the budget remembers of one request in flight, to learn from its answer.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    seq: u64,
    sent_at: Instant,
    in_flight: u32,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Permit<'a> {
    budget: &'a Budget,
    /// The request, for [`Budget::throttled`] and [`Budget::answered`].
    pub ticket: Ticket,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut g = self.budget.lock();
        g.in_flight = g.in_flight.saturating_sub(1);
        drop(g);
        self.budget.wake.notify_waiters();
    }
}

impl Permit<'_> {
    /// The request leaves now. A permit may wait between being granted and the send (for
    /// a token refresh, say), and the server counts a request when it arrives: so the
    /// budget counts it from now, or a burst granted before a slow refresh would land
    /// closer to the next one than the budget believes.
    pub fn leaving(&mut self) {
        let now = Instant::now();
        let mut g = self.budget.lock();
        if let Some(i) = g.log.iter().position(|s| s.seq == self.ticket.seq) {
            // Moved to the back with its new time: the log stays in time order.
            if let Some(mut sent) = g.log.remove(i) {
                sent.at = now;
                g.log.push_back(sent);
            }
        }
        self.ticket.sent_at = now;
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// Whether one more request fits `limits` given the sends in `log` at `now`, or how long
/// to wait until it does.
fn rate_wait(limits: &Limits, log: &VecDeque<Sent>, now: Instant) -> Duration {
    let long = limits.window + limits.margin;
    let short = SECOND + Limits::default_margin(SECOND);
    let mut wait = Duration::ZERO;
    for (n, span) in [(limits.per_window, long), (limits.per_second, short)] {
        if n == 0 {
            continue;
        }
        let n = n as usize;
        let recent = log
            .iter()
            .rev()
            .take_while(|s| now.duration_since(s.at) < span)
            .count();
        if recent >= n {
            if let Some(s) = log.iter().rev().nth(n - 1) {
                wait = wait.max(span.saturating_sub(now.duration_since(s.at)));
            }
        }
    }
    wait
}

/// The most accepted requests within any one second of `log`.
fn best_second(log: &VecDeque<Sent>) -> u32 {
    let ok: Vec<Instant> = log.iter().filter(|s| !s.throttled).map(|s| s.at).collect();
    let mut best = 0;
    let mut start = 0;
    for (end, t) in ok.iter().enumerate() {
        while t.duration_since(ok[start]) >= SECOND {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best as u32
}

impl Budget {
    /// A budget with these limits.
    pub fn new(limits: Limits) -> Self {
        Budget {
            configured: limits.clone(),
            inner: Mutex::new(Inner {
                limits,
                log: VecDeque::new(),
                next_seq: 0,
                in_flight: 0,
                max_ok_in_flight: 0,
                adjusted_at: None,
                paused_until: None,
                probing: false,
                users: 0,
            }),
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
        }
    }

    /// The budget shared by everyone reading `key` (realm and API host) with these limits.
    pub fn shared(key: &str, limits: Limits) -> Arc<Budget> {
        type Registry = Mutex<HashMap<(String, Limits), Arc<Budget>>>;
        static BUDGETS: OnceLock<Registry> = OnceLock::new();
        let map = BUDGETS.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((key.to_string(), limits.clone()))
            .or_insert_with(|| Arc::new(Budget::new(limits)))
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client starts using the budget.
    pub fn join(&self) {
        self.lock().users += 1;
    }

    /// A client is done with the budget; when the last one leaves, what throttles taught
    /// is forgotten (the next run starts from the configured limits again).
    pub fn leave(&self) {
        let mut g = self.lock();
        g.users = g.users.saturating_sub(1);
        if g.users == 0 {
            g.limits = self.configured.clone();
            g.adjusted_at = None;
            g.paused_until = None;
            g.probing = false;
            g.max_ok_in_flight = 0;
        }
    }

    /// Requests started through this budget so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Throttle faults reported so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// The limits in force now.
    pub fn limits(&self) -> Limits {
        self.lock().limits.clone()
    }

    /// Waits until one more request fits, then counts it.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before the check, so a release between the check and the wait
            // is not missed.
            let released = self.wake.notified();
            let wait = {
                let mut g = self.lock();
                let now = Instant::now();
                let keep = (g.limits.window + g.limits.margin).max(SECOND * 2);
                while g
                    .log
                    .front()
                    .is_some_and(|s| now.duration_since(s.at) >= keep)
                {
                    g.log.pop_front();
                }
                let paused = g
                    .paused_until
                    .filter(|p| *p > now)
                    .map(|p| p.duration_since(now));
                let full = (g.limits.concurrency > 0 && g.in_flight >= g.limits.concurrency)
                    || (g.probing && g.in_flight > 0);
                match paused {
                    Some(p) => Some(p),
                    None if full => None,
                    None => {
                        let wait = rate_wait(&g.limits, &g.log, now);
                        if wait.is_zero() {
                            let seq = g.next_seq;
                            g.next_seq += 1;
                            g.in_flight += 1;
                            g.log.push_back(Sent {
                                seq,
                                at: now,
                                throttled: false,
                            });
                            self.sent.fetch_add(1, Ordering::Relaxed);
                            return Permit {
                                budget: self,
                                ticket: Ticket {
                                    seq,
                                    sent_at: now,
                                    in_flight: g.in_flight,
                                },
                            };
                        }
                        Some(wait)
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => released.await,
            }
        }
    }

    /// The request of `ticket` was answered without a throttle.
    pub fn answered(&self, ticket: &Ticket) {
        let mut g = self.lock();
        g.max_ok_in_flight = g.max_ok_in_flight.max(ticket.in_flight);
        let was_probing = std::mem::replace(&mut g.probing, false);
        drop(g);
        if was_probing {
            self.wake.notify_waiters();
        }
    }

    /// The request of `ticket` was throttled: pause the realm for `wait` and, unless the
    /// request predates the last adjustment, lower a limit (see the module doc). Returns
    /// a description of the new limits when they changed.
    pub fn throttled(&self, ticket: &Ticket, wait: Duration) -> Option<String> {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        if !self.configured.learn {
            self.answered(ticket);
            return None;
        }
        let mut g = self.lock();
        let now = Instant::now();
        if let Some(s) = g.log.iter_mut().find(|s| s.seq == ticket.seq) {
            s.throttled = true;
        }
        let until = now + wait;
        g.paused_until = Some(g.paused_until.map_or(until, |p| p.max(until)));
        g.probing = true;
        if g.adjusted_at.is_some_and(|a| ticket.sent_at < a) {
            return None;
        }
        let window = self.configured.window;
        let within = |s: &&Sent, span: Duration| now.duration_since(s.at) < span;
        let sent_1s = g.log.iter().filter(|s| within(s, SECOND)).count() as u32;
        let ok_1s = g
            .log
            .iter()
            .filter(|s| !s.throttled && within(s, SECOND))
            .count() as u32;
        let ok_window = g
            .log
            .iter()
            .filter(|s| !s.throttled && within(s, window))
            .count() as u32;
        let best = best_second(&g.log);
        let lowers = |limit: u32, to: u32| to >= 1 && (limit == 0 || to < limit);
        let in_flight = ticket.in_flight;
        let max_ok_in_flight = g.max_ok_in_flight;
        let l = &mut g.limits;
        if sent_1s < best {
            // We sent less in the last second than the server once took in one: the
            // long window is what is full.
            if lowers(l.per_window, ok_window) {
                l.per_window = ok_window;
            } else if in_flight >= 2 && lowers(l.concurrency, in_flight - 1) {
                l.concurrency = in_flight - 1;
            } else {
                return None;
            }
        } else if in_flight >= 2
            && in_flight > max_ok_in_flight
            && lowers(l.concurrency, in_flight - 1)
        {
            l.concurrency = in_flight - 1;
        } else if lowers(l.per_second, ok_1s) {
            l.per_second = ok_1s;
        } else if l.per_second > 1 {
            // Both the second and the window fit what was seen; the second is the
            // cheaper guess to be wrong about (the next fault, after the pause, tells).
            l.per_second -= 1;
        } else {
            return None;
        }
        let description = format!(
            "{} per {} s, {} per second, {} in flight",
            l.per_window,
            window.as_secs_f64(),
            l.per_second,
            l.concurrency
        );
        g.adjusted_at = Some(now);
        Some(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_window() {
        let b = Budget::new(Limits {
            per_window: 5,
            window: Duration::from_secs(10),
            per_second: 3,
            concurrency: 0,
            margin: Limits::default_margin(Duration::from_secs(10)),
            learn: true,
        });
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            let _p = b.acquire().await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times[..=i]
                .iter()
                .filter(|u| t.saturating_sub(**u) < Duration::from_secs(10))
                .count();
            assert!(in_window <= 5, "{times:?}");
            let in_second = times[..=i]
                .iter()
                .filter(|u| t.saturating_sub(**u) < Duration::from_secs(1))
                .count();
            assert!(in_second <= 3, "{times:?}");
        }
    }

    /// A permit that waited (for a token) before its request left counts from the
    /// moment it left: the next one keeps a whole second (and margin) from that.
    #[tokio::test(start_paused = true)]
    async fn a_permit_counts_from_when_its_request_leaves() {
        let b = Budget::new(Limits {
            per_window: 0,
            window: Duration::from_secs(60),
            per_second: 1,
            concurrency: 0,
            margin: Limits::default_margin(Duration::from_secs(60)),
            learn: true,
        });
        let start = Instant::now();
        let mut first = b.acquire().await;
        tokio::time::sleep(Duration::from_millis(600)).await; // the token refresh
        first.leaving();
        drop(first);
        let _second = b.acquire().await;
        let gap = start.elapsed();
        assert!(
            gap >= Duration::from_millis(600) + SECOND,
            "the second request left {gap:?} after the first was granted"
        );
    }

    fn production(window_secs: u64) -> Limits {
        Limits {
            per_window: 500,
            window: Duration::from_secs(window_secs),
            per_second: 10,
            concurrency: 10,
            margin: Limits::default_margin(Duration::from_secs(window_secs)),
            learn: true,
        }
    }

    /// Sends sequentially through `b` against a server admitting `admit(at)`; returns the
    /// throttles.
    async fn drive(b: &Budget, n: usize, mut admit: impl FnMut(Instant) -> bool) -> u32 {
        let mut throttles = 0;
        let mut done = 0;
        while done < n {
            let p = b.acquire().await;
            let ticket = p.ticket;
            drop(p);
            if admit(Instant::now()) {
                b.answered(&ticket);
                done += 1;
            } else {
                throttles += 1;
                b.throttled(&ticket, Duration::from_secs(1));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        throttles
    }

    #[tokio::test(start_paused = true)]
    async fn a_tighter_window_is_learned_in_a_handful_of_throttles() {
        // The server admits 20 per 5 s; the budget allows 500 per 5 s at 10/s.
        let b = Budget::new(production(5));
        let mut admitted: VecDeque<Instant> = VecDeque::new();
        let throttles = drive(&b, 100, |now| {
            while admitted
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(5))
            {
                admitted.pop_front();
            }
            let ok = admitted.len() < 20;
            if ok {
                admitted.push_back(now);
            }
            ok
        })
        .await;
        assert!(throttles <= 5, "{throttles} throttles");
        assert_eq!(b.limits().per_window, 20);
        assert!(b.limits().per_second >= 9, "the second was barely touched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tighter_second_is_learned_without_touching_the_window() {
        // The server admits 4 per second.
        let b = Budget::new(production(60));
        let mut admitted: VecDeque<Instant> = VecDeque::new();
        let throttles = drive(&b, 60, |now| {
            while admitted
                .front()
                .is_some_and(|t| now.duration_since(*t) >= SECOND)
            {
                admitted.pop_front();
            }
            let ok = admitted.len() < 4;
            if ok {
                admitted.push_back(now);
            }
            ok
        })
        .await;
        assert!(throttles <= 5, "{throttles} throttles");
        assert_eq!(b.limits().per_second, 4);
        assert_eq!(b.limits().per_window, 500, "the window was not blamed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_client_leaving_forgets_what_throttles_taught() {
        let b = Budget::new(production(60));
        b.join();
        let p = b.acquire().await;
        let t = p.ticket;
        drop(p);
        assert!(b.throttled(&t, Duration::from_millis(10)).is_some());
        assert_ne!(b.limits(), production(60));
        b.leave();
        assert_eq!(b.limits(), production(60));
    }
}
