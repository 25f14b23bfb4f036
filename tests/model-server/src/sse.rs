//! The Messages API's streaming answer, as pure data: which server-sent
//! events a scripted turn becomes, and their wire encoding.
//!
//! The order is the real API's: `message_start`, `ping`, then per content
//! block `content_block_start`, one or more `content_block_delta`s
//! (`text_delta` or `input_json_delta`), `content_block_stop`; then
//! `message_delta` (stop reason and output usage) and `message_stop`.

use serde_json::{Value, json};

use crate::script::{Turn, Usage};

/// One server-sent event: its `event:` name and its `data:` JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub name: &'static str,
    pub data: Value,
}

impl SseEvent {
    /// `event: <name>\ndata: <json>\n\n`. The JSON is compact, so it never
    /// holds a newline and one `data:` line is enough.
    pub fn encode(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

/// Ids and sizes the events need besides the turn itself.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    pub message_id: String,
    pub model: String,
    /// Used for a tool_use block that has no scripted id.
    pub tool_use_id: String,
    /// Input tokens to report when the turn does not script its usage.
    pub input_tokens: u64,
}

/// Pieces of text small enough that a client sees several deltas: words
/// with their trailing whitespace.
pub fn text_chunks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if ch.is_whitespace() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits serialized JSON into about `parts` pieces at char boundaries, as
/// the real API streams `input_json_delta.partial_json`.
pub fn json_chunks(json: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(parts.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn output_tokens(turn: &Turn) -> u64 {
    let text = turn.text.as_deref().map_or(0, str::len);
    let tool = turn
        .tool_use
        .as_ref()
        .map_or(0, |t| t.input.to_string().len());
    ((text + tool) as u64).div_ceil(4).max(1)
}

fn usage(turn: &Turn, meta: &MessageMeta) -> Usage {
    turn.usage.unwrap_or(Usage {
        input_tokens: meta.input_tokens,
        output_tokens: output_tokens(turn),
    })
}

fn stop_reason(turn: &Turn) -> &'static str {
    if turn.tool_use.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn tool_use_id(turn: &Turn, meta: &MessageMeta) -> String {
    turn.tool_use
        .as_ref()
        .and_then(|t| t.id.clone())
        .unwrap_or_else(|| meta.tool_use_id.clone())
}

/// The events of one streamed answer. A turn with neither text nor a tool
/// call answers with an empty text block, which is still a valid message.
pub fn turn_events(turn: &Turn, meta: &MessageMeta) -> Vec<SseEvent> {
    let usage = usage(turn, meta);
    let mut ev = vec![
        SseEvent {
            name: "message_start",
            data: json!({
                "type": "message_start",
                "message": {
                    "id": meta.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": meta.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": usage.input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1
                    }
                }
            }),
        },
        SseEvent {
            name: "ping",
            data: json!({"type": "ping"}),
        },
    ];
    let mut index = 0u32;
    let text = match (&turn.text, &turn.tool_use) {
        (Some(t), _) => Some(t.as_str()),
        (None, None) => Some(""),
        (None, Some(_)) => None,
    };
    if let Some(text) = text {
        ev.push(SseEvent {
            name: "content_block_start",
            data: json!({"type": "content_block_start", "index": index,
                         "content_block": {"type": "text", "text": ""}}),
        });
        for chunk in text_chunks(text) {
            ev.push(SseEvent {
                name: "content_block_delta",
                data: json!({"type": "content_block_delta", "index": index,
                             "delta": {"type": "text_delta", "text": chunk}}),
            });
        }
        if turn.stream_error.is_none() {
            ev.push(SseEvent {
                name: "content_block_stop",
                data: json!({"type": "content_block_stop", "index": index}),
            });
        }
        index += 1;
    }
    if let Some(err) = &turn.stream_error {
        // Broken off mid-answer: no block stop, no message_delta or stop.
        ev.push(SseEvent {
            name: "error",
            data: err.body(),
        });
        return ev;
    }
    if let Some(tool) = &turn.tool_use {
        ev.push(SseEvent {
            name: "content_block_start",
            data: json!({"type": "content_block_start", "index": index,
                         "content_block": {"type": "tool_use", "id": tool_use_id(turn, meta),
                                           "name": tool.name, "input": {}}}),
        });
        for chunk in json_chunks(&tool.input.to_string(), 3) {
            ev.push(SseEvent {
                name: "content_block_delta",
                data: json!({"type": "content_block_delta", "index": index,
                             "delta": {"type": "input_json_delta", "partial_json": chunk}}),
            });
        }
        ev.push(SseEvent {
            name: "content_block_stop",
            data: json!({"type": "content_block_stop", "index": index}),
        });
    }
    ev.push(SseEvent {
        name: "message_delta",
        data: json!({"type": "message_delta",
                     "delta": {"stop_reason": stop_reason(turn), "stop_sequence": null},
                     "usage": {"output_tokens": usage.output_tokens}}),
    });
    ev.push(SseEvent {
        name: "message_stop",
        data: json!({"type": "message_stop"}),
    });
    ev
}

/// The same answer as one JSON message, for a request with `stream: false`.
pub fn turn_message(turn: &Turn, meta: &MessageMeta) -> Value {
    let usage = usage(turn, meta);
    let mut content = Vec::new();
    if let Some(t) = &turn.text {
        content.push(json!({"type": "text", "text": t}));
    }
    if let Some(tool) = &turn.tool_use {
        content.push(json!({"type": "tool_use", "id": tool_use_id(turn, meta),
                            "name": tool.name, "input": tool.input}));
    }
    if content.is_empty() {
        content.push(json!({"type": "text", "text": ""}));
    }
    json!({
        "id": meta.message_id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content,
        "stop_reason": stop_reason(turn),
        "stop_sequence": null,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Turn;

    fn meta() -> MessageMeta {
        MessageMeta {
            message_id: "msg_1".into(),
            model: "claude-test".into(),
            tool_use_id: "toolu_1".into(),
            input_tokens: 42,
        }
    }

    /// Decodes a stream the way an SSE client does: blocks split by a blank
    /// line, `event:` and `data:` fields.
    fn decode(stream: &str) -> Vec<(String, Value)> {
        stream
            .split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|block| {
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected line {line:?}");
                    }
                }
                (name, serde_json::from_str(&data).unwrap())
            })
            .collect()
    }

    fn encode_all(events: &[SseEvent]) -> String {
        events.iter().map(SseEvent::encode).collect()
    }

    #[test]
    fn encodes_one_event_per_block() {
        let e = SseEvent {
            name: "ping",
            data: json!({"type": "ping", "s": "two\nlines"}),
        };
        assert_eq!(
            e.encode(),
            "event: ping\ndata: {\"s\":\"two\\nlines\",\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn text_turn_streams_in_the_api_order_and_reassembles() {
        let events = turn_events(&Turn::text("Hello there, world"), &meta());
        let decoded = decode(&encode_all(&events));
        let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &decoded {
            assert_eq!(data["type"], name.as_str(), "data.type names the event");
        }
        let text: String = decoded
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(text, "Hello there, world");
        assert_eq!(decoded[0].1["message"]["id"], "msg_1");
        assert_eq!(decoded[0].1["message"]["usage"]["input_tokens"], 42);
        assert_eq!(decoded[7].1["delta"]["stop_reason"], "end_turn");
        assert!(decoded[7].1["usage"]["output_tokens"].as_u64().unwrap() >= 1);
    }

    #[test]
    fn tool_use_streams_partial_json_that_reassembles_to_the_input() {
        let input = json!({"command": "touch \"a b\".txt", "description": "ünïcode"});
        let turn = Turn {
            text: Some("Running it.".into()),
            ..Turn::tool_use("Bash", input.clone())
        };
        let decoded = decode(&encode_all(&turn_events(&turn, &meta())));
        let starts: Vec<&Value> = decoded
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0]["content_block"]["type"], "text");
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["type"], "tool_use");
        assert_eq!(starts[1]["content_block"]["name"], "Bash");
        assert_eq!(starts[1]["content_block"]["id"], "toolu_1");
        let partial: Vec<String> = decoded
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| {
                assert_eq!(d["index"], 1);
                d["delta"]["partial_json"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(partial.len() > 1, "input arrives in several pieces");
        let whole: Value = serde_json::from_str(&partial.concat()).unwrap();
        assert_eq!(whole, input);
        let delta = decoded.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn a_stream_error_breaks_off_after_the_text_so_far() {
        let events = turn_events(&Turn::stream_error("Partial answer", 529), &meta());
        let decoded = decode(&encode_all(&events));
        let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "error"
            ]
        );
        let (_, err) = decoded.last().unwrap();
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], "overloaded_error");
    }

    #[test]
    fn chunking_keeps_every_character() {
        for s in ["", "a", "a b", "  lead", "trail  ", "é ü\n\tx"] {
            assert_eq!(text_chunks(s).concat(), s);
            assert_eq!(json_chunks(s, 3).concat(), s);
        }
        assert_eq!(text_chunks("a b c"), ["a ", "b ", "c"]);
    }

    #[test]
    fn non_streaming_message_has_the_same_content() {
        let m = turn_message(&Turn::bash("ls"), &meta());
        assert_eq!(m["content"][0]["type"], "tool_use");
        assert_eq!(m["content"][0]["input"]["command"], "ls");
        assert_eq!(m["stop_reason"], "tool_use");
    }
}
