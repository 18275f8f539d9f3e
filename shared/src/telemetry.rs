//! Logging, always to stderr (stdout belongs to a command's output).
//!
//! - Lambda: one JSON object per line, with `timestamp` and `level` (what
//!   Lambda's log-level filter reads; a line without a timestamp is taken
//!   as INFO) and the fields of the enclosing spans lifted to the top level,
//!   so the runtime's `requestId` and a step's `proposal` are on every line.
//!   The level comes from `AWS_LAMBDA_LOG_LEVEL` (the function's
//!   `ApplicationLogLevel`), else `RUST_LOG`, else INFO.
//! - A terminal: compact text, coloured only when stderr is a terminal.
//!
//! Secrets never reach a log line: the types that hold them redact their
//! Debug output, and error texts never quote a value.

use serde_json::{Map, Value};
use std::io::IsTerminal;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

fn filter(default: &str) -> EnvFilter {
    let lambda = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.to_ascii_lowercase());
    match lambda {
        // The function's level for our code; the SDKs stay at warn unless
        // asked for by RUST_LOG.
        Some(l) => EnvFilter::new(format!(
            "warn,fieldgate={l},fieldgate_domain={l},fieldgate_qr_intake={l},fieldgate_structure={l},\
             fieldgate_approval={l},fieldgate_commit={l},fieldgate_mcp={l},lambda_runtime={l}"
        )),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    }
}

/// JSON lines for Lambda (CloudWatch parses them).
pub fn init_json() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_writer(std::io::stderr)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .try_init();
}

/// Compact text for a terminal.
pub fn init_text() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("info,hyper=warn,reqwest=warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .try_init();
}

/// One JSON object per event: `timestamp`, `level`, `message`, the event's
/// fields, and the fields of every enclosing span (outermost first, inner
/// ones win), all at the top level.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc();
        line.insert(
            "timestamp".into(),
            Value::String(
                now.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            ),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(map);
                }
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_are_top_level_on_every_line() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let outer = tracing::info_span!("Lambda runtime invoke", requestId = "req-1");
            let _o = outer.enter();
            let inner = tracing::info_span!("commit", proposal = "01J");
            let _i = inner.enter();
            tracing::warn!(attempt = 2, "Salesforce call failed");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["requestId"], "req-1");
        assert_eq!(line["proposal"], "01J");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["message"], "Salesforce call failed");
        assert!(line["timestamp"].as_str().unwrap().contains('T'));
    }
}
