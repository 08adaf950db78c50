//! Forwards the plugin's `tracing` events to the host.
//!
//! A cdylib has its own copy of `tracing`, so its events never reach the host's subscriber
//! by themselves. The SDK installs a global subscriber inside the plugin whose layer turns
//! each event into a `log` callback on the host sink of the call that produced it: every
//! entry point runs inside a `tributary_call` span that names its call id, and events are
//! routed by walking their span scope. Events from tasks spawned without that span go to
//! the most recent call.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::ffi::HostSinkBox;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(3);
static SINKS: Mutex<Vec<(u64, Arc<HostSinkBox>)>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Registers `sink` for log forwarding; dropping the guard unregisters it.
pub(crate) struct CallGuard {
    pub(crate) id: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut sinks = SINKS.lock().unwrap_or_else(PoisonError::into_inner);
        sinks.retain(|(id, _)| *id != self.id);
    }
}

pub(crate) fn register(sink: Arc<HostSinkBox>) -> CallGuard {
    INSTALL.call_once(|| {
        // Fails only if the crate embedding us (a test, a benchmark) installed its own
        // subscriber, which then gets the events instead: fine.
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(ForwardLayer),
        );
    });
    MAX_LEVEL.store(sink.log_level(), Ordering::Relaxed);
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    SINKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, sink));
    CallGuard { id }
}

fn level_u8(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct CallId(u64);

struct ForwardLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    call: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "tributary_call" {
            self.call = Some(value);
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
}

impl<S> Layer<S> for ForwardLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        // Usage events are counts for the host, not log lines: they cross at any level.
        metadata.is_span()
            || metadata.target() == crate::usage::TARGET
            || level_u8(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(call), Some(span)) = (fields.call, ctx.span(id)) {
            span.extensions_mut().insert(CallId(call));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let call = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<CallId>().map(|c| c.0))
        });
        let sink = {
            let sinks = SINKS.lock().unwrap_or_else(PoisonError::into_inner);
            match call {
                Some(call) => sinks
                    .iter()
                    .find(|(id, _)| *id == call)
                    .map(|(_, s)| s.clone()),
                None => None,
            }
            .or_else(|| sinks.last().map(|(_, s)| s.clone()))
        };
        if let Some(sink) = sink {
            let mut text = fields.message;
            text.push_str(&fields.rest);
            let meta = event.metadata();
            sink.log(
                level_u8(meta.level()),
                meta.target().into(),
                text.as_str().into(),
            );
        }
    }
}
