//! Progress bars on a terminal, plain log lines elsewhere, and the closing summary table.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runner::StreamReport;

static MULTI: OnceLock<MultiProgress> = OnceLock::new();

fn multi() -> &'static MultiProgress {
    MULTI.get_or_init(|| {
        if std::io::stderr().is_terminal() {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    })
}

/// The run's progress display: one bar per source.
pub struct Progress {
    tty: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Bars when stderr is a terminal, nothing otherwise (log lines say what happens).
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A bar for `source`, counting records.
    pub fn source_bar(&self, source: &str) -> ProgressBar {
        if !self.tty {
            return ProgressBar::hidden();
        }
        let bar = multi().add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} {prefix:.bold} {human_pos:>12} records  {per_sec:>14}  {elapsed:>4}  {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(source.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// A `tracing` writer that prints above the progress bars instead of through them.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

/// One log line being written.
pub struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        multi().suspend(|| {
            let _ = std::io::stderr().write_all(&bytes);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::with_capacity(256))
    }
}

/// The closing table: source, stream, records, deleted, seconds, records/s, status.
pub fn summary_table(reports: &[StreamReport]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "source",
        "stream",
        "records",
        "deleted",
        "seconds",
        "records/s",
        "status",
    ]);
    for r in reports {
        let rate = if r.seconds > 0.0 {
            r.records as f64 / r.seconds
        } else {
            0.0
        };
        let status = match &r.error {
            None => "complete".to_string(),
            Some(e) => format!("INCOMPLETE ({}): {}", e.kind, e.message),
        };
        table.add_row(vec![
            Cell::new(&r.source),
            Cell::new(&r.stream),
            Cell::new(r.records).set_alignment(CellAlignment::Right),
            Cell::new(r.deleted).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.2}", r.seconds)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{rate:.0}")).set_alignment(CellAlignment::Right),
            Cell::new(status),
        ]);
    }
    table.to_string()
}
