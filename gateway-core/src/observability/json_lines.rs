//! JSON log lines: one object per event, carrying the fields of its span.
//!
//! Each event becomes one line, written with one `write`:
//!
//! ```text
//! {"timestamp":"2026-12-01T01:56:09.623177Z","level":"INFO","message":"request served",
//!  "status":200,…,"target":"access","span":{"trace_id":"…","request_id":"…","name":"request"}}
//! ```
//!
//! (one line in the output), the shape of tracing-subscriber's JSON format
//! with `flatten_event` and the current span: the event's fields at the top
//! level, and the fields and name of the innermost span this layer sees
//! under `span`. Strings are JSON strings, integers and booleans JSON
//! values, floats numbers (`null` when not finite); `%` and `?` fields are
//! their `Display` and `Debug` text.
//!
//! The fields of a span are rendered to JSON once, when the span is
//! created (or a field is recorded later), and copied into each line of the
//! span. Hand-written for that: tracing-subscriber's JSON formatter keeps a
//! span's fields as JSON text and parses them back into a map for every
//! line; counted with callgrind on a forwarded request, its access-log line
//! cost 28,000 instructions and its request span 9,600, a quarter of the
//! request's.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    io::Write as _,
    time::SystemTime,
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, fmt::MakeWriter, layer::Context, registry::LookupSpan};

/// The `tracing` layer writing JSON lines to `W`; see the module docs.
#[derive(Debug)]
pub(crate) struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    /// Lines written to the writers `make_writer` makes, one per event.
    pub(crate) fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// A span's fields as JSON members, each followed by a comma.
#[derive(Debug)]
struct SpanFields(String);

thread_local! {
    /// The line being formatted, reused by the thread's next events.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Room for a request span's fields: a trace id, a request id, a name.
        let mut fields = String::with_capacity(160);
        attrs.record(&mut Members(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut Members(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut String| {
            line.clear();
            self.format(event, &ctx, line);
            // A line that cannot be written is lost: logging never fails a request.
            let _ = self
                .make_writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        };
        LINE.with(|reused| match reused.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            // An event logged while formatting another (from a field's `Debug`).
            Err(_) => write(&mut String::new()),
        });
    }
}

impl<W> JsonLines<W> {
    fn format<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, line: &mut String)
    where
        S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    {
        let metadata = event.metadata();
        let _ = write!(
            line,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\",",
            humantime::format_rfc3339_micros(SystemTime::now()),
            metadata.level()
        );
        event.record(&mut Members(line));
        line.push_str("\"target\":");
        push_string(line, metadata.target());
        if let Some(span) = ctx.event_span(event) {
            line.push_str(",\"span\":{");
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                line.push_str(fields);
            }
            line.push_str("\"name\":");
            push_string(line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
    }
}

/// Writes the fields it visits as JSON members, each followed by a comma.
struct Members<'a>(&'a mut String);

impl Members<'_> {
    fn key(&mut self, field: &Field) -> &mut String {
        push_string(self.0, field.name());
        self.0.push(':');
        self.0
    }

    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        let out = self.key(field);
        let _ = write!(out, "{value},");
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let out = self.key(field);
        push_string(out, value);
        out.push(',');
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let out = self.key(field);
        out.push('"');
        let _ = write!(Escaped(out), "{value:?}");
        out.push_str("\",");
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let out = self.key(field);
        out.push('"');
        let _ = write!(Escaped(out), "{value}");
        out.push_str("\",");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.number(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match value.is_finite() {
            true => self.number(field, value),
            false => self.number(field, "null"),
        }
    }
}

/// `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    let _ = Escaped(out).write_str(text);
    out.push('"');
}

/// Escapes what is written to it for the inside of a JSON string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        while let Some(at) = text.bytes().position(needs_escape) {
            self.0.push_str(&text[..at]);
            match text.as_bytes()[at] {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                control => {
                    let _ = write!(self.0, "\\u{control:04x}");
                }
            }
            text = &text[at + 1..];
        }
        self.0.push_str(text);
        Ok(())
    }
}

/// What a JSON string cannot hold as itself: quotes, backslashes, control characters.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Every `write` it is given, one entry each.
    #[derive(Debug, Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Writes {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The lines `log` writes, each checked to be one whole line written at once.
    fn lines_of(log: impl FnOnce()) -> Vec<Value> {
        let writes = Writes::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(writes.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let writes = writes.0.lock().expect("not poisoned").clone();
        writes
            .iter()
            .map(|write| {
                let text = std::str::from_utf8(write).expect("UTF-8");
                let line = text.strip_suffix('\n').expect("ends the line");
                assert!(!line.contains('\n'), "one line per write: {text}");
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
            })
            .collect()
    }

    #[derive(Debug)]
    struct Refused;

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("refused \"x\"")
        }
    }

    impl std::error::Error for Refused {}

    #[test]
    fn an_event_in_a_span_carries_its_fields_typed_and_the_spans_fields() {
        let lines = lines_of(|| {
            let span = tracing::info_span!("request", service = "bff-web", attempt = 2_u64);
            let _entered = span.enter();
            let error: &(dyn std::error::Error + 'static) = &Refused;
            tracing::warn!(
                target: "access",
                route = "/api/{id}",
                status = 200_u16,
                delta = -3_i64,
                latency_ms = 1.5,
                cached = true,
                method = %http::Method::GET,
                tags = ?["a", "b"],
                error,
                "request {} served",
                "quickly"
            );
        });
        let [line] = lines.as_slice() else {
            panic!("one line: {lines:?}")
        };
        let timestamp = line["timestamp"].as_str().expect("a string");
        assert!(
            humantime::parse_rfc3339(timestamp).is_ok() && timestamp.len() == 27,
            "RFC 3339 with microseconds: {timestamp}"
        );
        let mut rest = line.clone();
        rest.as_object_mut().expect("object").remove("timestamp");
        assert_eq!(
            rest,
            json!({
                "level": "WARN",
                "message": "request quickly served",
                "route": "/api/{id}",
                "status": 200,
                "delta": -3,
                "latency_ms": 1.5,
                "cached": true,
                "method": "GET",
                "tags": "[\"a\", \"b\"]",
                "error": "refused \"x\"",
                "target": "access",
                "span": {"name": "request", "service": "bff-web", "attempt": 2},
            })
        );
    }

    #[test]
    fn outside_a_span_there_is_no_span_and_inside_two_the_innermost_is_given() {
        let lines = lines_of(|| {
            tracing::info!("starting");
            let outer = tracing::info_span!("outer", tenant = "acme");
            let _outer = outer.enter();
            let inner =
                tracing::info_span!("inner", leg = "pricing", extra = tracing::field::Empty);
            let _inner = inner.enter();
            inner.record("extra", 7_u64);
            tracing::info!("in both");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "starting");
        assert!(lines[0].get("span").is_none(), "{}", lines[0]);
        assert_eq!(
            lines[1]["span"],
            json!({"name": "inner", "leg": "pricing", "extra": 7})
        );
    }

    #[test]
    fn strings_are_escaped_and_floats_that_are_not_numbers_are_null() {
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{7} delete \u{7f} é 🦀";
        let lines = lines_of(|| {
            tracing::info!(text = awkward, shown = %awkward, ratio = f64::NAN, big = f64::INFINITY, "{awkward}");
        });
        let line = &lines[0];
        assert_eq!(line["text"], awkward);
        assert_eq!(line["shown"], awkward);
        assert_eq!(line["message"], awkward);
        assert_eq!(line["ratio"], Value::Null);
        assert_eq!(line["big"], Value::Null);
    }

    /// As when a field's `Debug` logs under the global subscriber (a scoped
    /// one, as in these tests, drops events logged while it dispatches).
    #[test]
    fn an_event_logged_while_the_threads_line_is_in_use_is_written_whole() {
        let lines = lines_of(|| {
            LINE.with(|line| {
                let mut in_use = line.borrow_mut();
                in_use.push_str("half a line");
                tracing::info!(value = 7_u64, "while in use");
                assert_eq!(*in_use, "half a line", "the line in use is left alone");
            });
        });
        let [line] = lines.as_slice() else {
            panic!("one line: {lines:?}")
        };
        assert_eq!(line["message"], "while in use");
        assert_eq!(line["value"], 7);
    }
}
