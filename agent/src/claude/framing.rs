//! The CLI's stdout as events: bytes split into lines (with a size cap), lines
//! that are not JSON objects skipped, each object wrapped in the small typed
//! envelope clients route on. Pure: no I/O, so every edge is unit-tested.

use dispatch_api::protocol::ClaudeEvent;
use serde_json::Value;

/// Longest stdout line accepted. The CLI prints one JSON object per line; a
/// tool result can be large, but a line past this is dropped rather than
/// letting one line grow without bound (and an event must still fit in one
/// WebSocket message through the gateway, whose limit is 16 MiB).
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// What one complete line turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A JSON object: an event to pass on.
    Json(Value),
    /// Not JSON, or JSON that is not an object (a stray log line).
    NotJson(String),
    /// Longer than the cap; only its length is kept.
    TooLong(usize),
}

/// Splits a byte stream into lines. Bytes of a line past the cap are
/// discarded as they arrive, so memory stays bounded however long it is.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of the current line dropped because it passed the cap.
    overflow: usize,
}

impl LineFramer {
    pub fn new(max: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            max,
            overflow: 0,
        }
    }

    /// Feeds bytes; returns the lines they completed, in order.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            self.take(&bytes[..nl]);
            out.push(self.finish_line());
            bytes = &bytes[nl + 1..];
        }
        self.take(bytes);
        out
    }

    /// The last line when the stream ends without a newline.
    pub fn finish(&mut self) -> Option<Line> {
        if self.buf.is_empty() && self.overflow == 0 {
            return None;
        }
        Some(self.finish_line())
    }

    fn take(&mut self, part: &[u8]) {
        if self.overflow > 0 {
            self.overflow += part.len();
            return;
        }
        if self.buf.len() + part.len() > self.max {
            self.overflow = self.buf.len() + part.len();
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(part);
    }

    fn finish_line(&mut self) -> Line {
        if self.overflow > 0 {
            let n = self.overflow;
            self.overflow = 0;
            return Line::TooLong(n);
        }
        let bytes = std::mem::take(&mut self.buf);
        classify(&bytes)
    }
}

fn classify(bytes: &[u8]) -> Line {
    let trimmed = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(v @ Value::Object(_)) => Line::Json(v),
        _ => Line::NotJson(String::from_utf8_lossy(trimmed).into_owned()),
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Wraps one CLI event in the envelope: its `type`, `subtype` (for control
/// messages, the request's subtype), the conversation id, and the control
/// request id, so a client routes without parsing `raw`.
pub fn envelope(raw: Value, seq: u64) -> ClaudeEvent {
    let kind = str_field(&raw, "type").unwrap_or_else(|| "unknown".to_owned());
    let subtype = str_field(&raw, "subtype")
        .or_else(|| raw.get("request").and_then(|r| str_field(r, "subtype")))
        .or_else(|| raw.get("response").and_then(|r| str_field(r, "subtype")))
        .or_else(|| raw.get("event").and_then(|e| str_field(e, "type")));
    let request_id = str_field(&raw, "request_id")
        .or_else(|| raw.get("response").and_then(|r| str_field(r, "request_id")));
    ClaudeEvent {
        kind,
        subtype,
        session_id: str_field(&raw, "session_id"),
        request_id,
        seq,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_lines_across_chunks() {
        let mut f = LineFramer::new(1024);
        assert!(f.push(b"{\"a\":").is_empty());
        let lines = f.push(b"1}\n{\"b\":2}\r\n{\"c\"");
        assert_eq!(
            lines,
            [Line::Json(json!({"a":1})), Line::Json(json!({"b":2}))]
        );
        assert_eq!(f.push(b":3}\n"), [Line::Json(json!({"c":3}))]);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn non_json_lines_are_told_apart() {
        let mut f = LineFramer::new(1024);
        let lines = f.push(b"warning: something\n\n[1,2]\n\"s\"\n{bad\n");
        assert_eq!(
            lines,
            [
                Line::NotJson("warning: something".into()),
                Line::NotJson(String::new()),
                Line::NotJson("[1,2]".into()),
                Line::NotJson("\"s\"".into()),
                Line::NotJson("{bad".into()),
            ]
        );
    }

    #[test]
    fn an_overlong_line_is_dropped_and_the_next_one_survives() {
        let mut f = LineFramer::new(8);
        assert!(f.push(b"{\"a\":\"xx").is_empty());
        assert!(f.push(b"xxxxxxxxxxxxxxxx").is_empty());
        let lines = f.push(b"\"}\n{\"b\":1}\n");
        assert_eq!(lines, [Line::TooLong(26), Line::Json(json!({"b":1}))]);
        // A line of exactly the cap is fine.
        assert_eq!(f.push(b"{\"c\":12}\n"), [Line::Json(json!({"c":12}))]);
    }

    #[test]
    fn unterminated_last_line_comes_out_at_the_end() {
        let mut f = LineFramer::new(1024);
        assert!(f.push(b"{\"x\":true}").is_empty());
        assert_eq!(f.finish(), Some(Line::Json(json!({"x":true}))));
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn invalid_utf8_is_not_json_and_does_not_panic() {
        let mut f = LineFramer::new(1024);
        let lines = f.push(b"\xff\xfe{\n");
        assert!(matches!(&lines[..], [Line::NotJson(_)]));
    }

    #[test]
    fn envelopes_name_type_subtype_session_and_request() {
        let e = envelope(
            json!({"type":"system","subtype":"init","session_id":"c1","cwd":"/w"}),
            0,
        );
        assert_eq!(
            (
                e.kind.as_str(),
                e.subtype.as_deref(),
                e.session_id.as_deref()
            ),
            ("system", Some("init"), Some("c1"))
        );
        let e = envelope(
            json!({"type":"control_request","request_id":"r1",
                   "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{}}}),
            7,
        );
        assert_eq!(e.subtype.as_deref(), Some("can_use_tool"));
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.seq, 7);
        let e = envelope(
            json!({"type":"control_response","response":{"subtype":"success","request_id":"i1"}}),
            8,
        );
        assert_eq!(e.request_id.as_deref(), Some("i1"));
        let e = envelope(
            json!({"type":"stream_event","session_id":"c1",
                   "event":{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}}),
            9,
        );
        assert_eq!(e.subtype.as_deref(), Some("content_block_delta"));
        let e = envelope(json!({"no_type": 1}), 10);
        assert_eq!(e.kind, "unknown");
        let wire = serde_json::to_value(&e).unwrap();
        assert_eq!(wire["type"], "unknown");
        assert!(wire.get("subtype").is_none());
    }
}
