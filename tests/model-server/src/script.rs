//! What the server answers: a queue of scripted turns, one per model request.
//!
//! A script file is JSON, either a list of turns or `{"turns": [...]}`:
//!
//! ```json
//! {"turns": [
//!   {"text": "Hello there"},
//!   {"tool_use": {"name": "Bash", "input": {"command": "touch made.txt"}}},
//!   {"text": "Done."},
//!   {"error": {"status": 529}}
//! ]}
//! ```
//!
//! A turn may carry `text` and `tool_use` together (text first, as the real
//! API does). `delay_ms` waits between streamed chunks, so that a test can
//! interrupt a turn while it is still streaming.

use serde::{Deserialize, Serialize};

/// One answer to one `POST /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUse>,
    /// Answer with an HTTP error instead of a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiErrorTurn>,
    /// Start streaming (status 200, the text so far), then fail with an
    /// `error` event, as the real API does when it is overloaded mid-answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<ApiErrorTurn>,
    /// Milliseconds to wait before each streamed chunk after the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolUse {
    /// The tool_use block id; generated (`toolu_<n>`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorTurn {
    pub status: u16,
    /// The API's error type; derived from the status when absent
    /// (529 `overloaded_error`, 429 `rate_limit_error`, else `api_error`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Turn {
    pub fn text(text: impl Into<String>) -> Self {
        Turn {
            text: Some(text.into()),
            ..Turn::default()
        }
    }

    pub fn tool_use(name: impl Into<String>, input: serde_json::Value) -> Self {
        Turn {
            tool_use: Some(ToolUse {
                id: None,
                name: name.into(),
                input,
            }),
            ..Turn::default()
        }
    }

    /// A Bash tool call, the tool the CLI asks permission for.
    pub fn bash(command: impl Into<String>) -> Self {
        Turn::tool_use(
            "Bash",
            serde_json::json!({"command": command.into(), "description": "Scripted command"}),
        )
    }

    pub fn error(status: u16) -> Self {
        Turn {
            error: Some(ApiErrorTurn {
                status,
                kind: None,
                message: None,
            }),
            ..Turn::default()
        }
    }

    /// Streams `text`, then breaks off with an `error` event of `status`'s type.
    pub fn stream_error(text: impl Into<String>, status: u16) -> Self {
        Turn {
            text: Some(text.into()),
            stream_error: Some(ApiErrorTurn {
                status,
                kind: None,
                message: None,
            }),
            ..Turn::default()
        }
    }

    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }
}

impl ApiErrorTurn {
    pub fn error_type(&self) -> String {
        if let Some(k) = &self.kind {
            return k.clone();
        }
        match self.status {
            529 => "overloaded_error",
            429 => "rate_limit_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            400 => "invalid_request_error",
            _ => "api_error",
        }
        .to_owned()
    }

    pub fn error_message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("scripted {} ({})", self.error_type(), self.status))
    }

    /// The JSON error body the real API sends.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "error": {"type": self.error_type(), "message": self.error_message()},
        })
    }
}

/// A script file's two accepted shapes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ScriptFile {
    List(Vec<Turn>),
    Object { turns: Vec<Turn> },
}

/// Parses a script (see the module docs), naming what is wrong when it fails.
pub fn parse_turns(json: &str) -> Result<Vec<Turn>, serde_json::Error> {
    match serde_json::from_str::<ScriptFile>(json) {
        Ok(ScriptFile::List(t)) | Ok(ScriptFile::Object { turns: t }) => Ok(t),
        // Untagged enums hide the real cause; re-parse as a list for a precise message.
        Err(_) => serde_json::from_str::<Vec<Turn>>(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_shapes() {
        let a = parse_turns(r#"[{"text":"hi"},{"error":{"status":529}}]"#).unwrap();
        let b = parse_turns(r#"{"turns":[{"text":"hi"},{"error":{"status":529}}]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], Turn::text("hi"));
        assert_eq!(a[1], Turn::error(529));
        let t = parse_turns(r#"[{"tool_use":{"name":"Bash","input":{"command":"ls"}}}]"#).unwrap();
        assert_eq!(t[0].tool_use.as_ref().unwrap().name, "Bash");
    }

    #[test]
    fn rejects_unknown_fields() {
        let e = parse_turns(r#"[{"txt":"hi"}]"#).unwrap_err();
        assert!(e.to_string().contains("txt"), "{e}");
    }

    #[test]
    fn error_types_follow_the_status() {
        assert_eq!(
            Turn::error(529).error.unwrap().error_type(),
            "overloaded_error"
        );
        assert_eq!(Turn::error(500).error.unwrap().error_type(), "api_error");
        let body = Turn::error(529).error.unwrap().body();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "overloaded_error");
    }
}
