//! `--log-format=json`: one JSON object per line on stderr for every event a
//! build reports, for log pipelines that ingest kaniko's JSON logs. Each object
//! has `time` (RFC 3339, UTC), `level` (`debug`, `info`, `warning`, `error`),
//! `event` and `msg` (the line text mode would print), and the event's own
//! fields; the README lists them. Text mode is untouched when this is off.

use serde_json::{Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// Switch the process's logs to JSON lines (once, at start).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Write one event: `fields` beside `time`, `level`, `event` and `msg`.
pub fn emit(level: &str, event: &str, msg: &str, fields: Map<String, Value>) {
    let mut o = Map::new();
    o.insert(
        "time".into(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    o.insert("level".into(), level.into());
    o.insert("event".into(), event.into());
    o.insert("msg".into(), msg.into());
    o.extend(fields);
    let mut line = serde_json::to_vec(&Value::Object(o)).unwrap_or_default();
    line.push(b'\n');
    // One write per line, so concurrent events never interleave.
    let _ = std::io::stderr().lock().write_all(&line);
}

/// Fields from `(name, value)` pairs.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `tracing` events (warnings, and details with `-v`) as JSON lines too.
pub struct Layer;

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let kind = if level == "warning" { "warning" } else { "log" };
        emit(level, kind, &m.0, Map::new());
    }
}
