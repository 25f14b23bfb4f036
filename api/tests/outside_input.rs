//! Property tests of every decoder in `dispatch-api` that takes outside
//! input (binary frames, JSON client messages, session ids) over arbitrary
//! bytes: none panics, and every refusal carries a stable error code with a
//! bounded message. Case counts are fixed so the suite stays fast in CI.

use dispatch_api::frame::{Frame, FrameKind, header_len};
use dispatch_api::protocol::{CLIENT_MESSAGE_TYPES, MAX_ERROR_MESSAGE};
use dispatch_api::session::MAX_SESSION_ID_LEN;
use dispatch_api::{ClientMessage, ErrorCode, ServerMessage, SessionId};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The codes a parse may refuse with, and nothing else (no `internal`).
const PARSE_CODES: &[ErrorCode] = &[
    ErrorCode::BadMessage,
    ErrorCode::UnknownType,
    ErrorCode::InvalidField,
];

fn check_parse(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = ClientMessage::parse(text) {
        prop_assert!(PARSE_CODES.contains(&e.code), "code {:?}", e.code);
        prop_assert!(!e.message.is_empty());
        prop_assert!(e.message.len() <= MAX_ERROR_MESSAGE, "{}", e.message.len());
        prop_assert!(e.id.as_ref().is_none_or(|i| i.len() <= MAX_SESSION_ID_LEN));
        // The reply a client gets is an `error` with that code.
        let reply: Value = serde_json::from_str(
            &ServerMessage::error(e.code, e.message, e.id)
                .for_request(e.client_ref)
                .to_json(),
        )
        .expect("replies are JSON");
        prop_assert_eq!(&reply["type"], "error");
        prop_assert_eq!(&reply["code"], e.code.as_str());
    }
    Ok(())
}

/// Any JSON value, a few levels deep, with strings that sometimes look like
/// what the protocol expects.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        "[a-z0-9_-]{1,70}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "id",
    "since",
    "data",
    "cols",
    "rows",
    "env",
    "shell",
    "workspacePath",
    "title",
    "clientRef",
    "input",
    "requestId",
    "allow",
    "resume",
    "model",
    "permissionMode",
    "conversationId",
    "offset",
];

/// A message of a known (or unknown) type with protocol field names holding
/// arbitrary values: what a confused or hostile client sends.
fn arb_message() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        prop::sample::select(CLIENT_MESSAGE_TYPES.to_vec()).prop_map(str::to_owned),
        ".{0,80}",
    ];
    let fields = prop::collection::vec((prop::sample::select(FIELDS.to_vec()), arb_json()), 0..6);
    (ty, fields).prop_map(|(ty, fields)| {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), Value::from(ty));
        for (k, v) in fields {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m).to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_from_any_bytes_decode_or_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        // A frame that decodes is exactly what its encoding says.
        if let Ok(f) = Frame::decode(&bytes) {
            prop_assert_eq!(f.encode(), bytes.clone());
            prop_assert!(SessionId::new(f.id).is_ok());
        }
    }

    #[test]
    fn frames_with_a_plausible_header_decode_or_are_refused(
        kind in 0u8..6,
        n in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![kind, n];
        bytes.extend_from_slice(&rest);
        match Frame::decode(&bytes) {
            Ok(f) => {
                prop_assert!(matches!(f.kind, FrameKind::Output | FrameKind::Snapshot | FrameKind::Input | FrameKind::Range));
                prop_assert_eq!(f.payload.len(), bytes.len() - header_len(n as usize));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn text_from_any_bytes_parses_or_gets_a_coded_error(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        check_parse(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn messages_with_wrong_values_get_a_coded_error(text in arb_message()) {
        check_parse(&text)?;
    }

    #[test]
    fn session_ids_are_checked(s in ".{0,80}") {
        let valid = !s.is_empty()
            && s.len() <= MAX_SESSION_ID_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(SessionId::new(&s).is_ok(), valid);
        let as_json = serde_json::from_value::<SessionId>(Value::from(s.clone()));
        prop_assert_eq!(as_json.is_ok(), valid);
    }
}

#[test]
fn a_huge_unknown_type_is_not_echoed_whole() {
    let huge = "x".repeat(900 * 1024);
    let text = json!({"type": huge, "id": huge, "clientRef": "r1"}).to_string();
    let e = ClientMessage::parse(&text).expect_err("refused");
    assert_eq!(e.code, ErrorCode::UnknownType);
    assert!(e.message.len() <= 128, "{} bytes", e.message.len());
    assert!(e.message.ends_with("…\""), "{}", e.message);
    assert_eq!(e.id, None, "an id no session can have is not echoed");
    assert_eq!(e.client_ref.as_deref(), Some("r1"));
    let reply = ServerMessage::error(ErrorCode::Internal, huge.clone(), Some(huge)).to_json();
    assert!(reply.len() < MAX_ERROR_MESSAGE + 100, "{}", reply.len());
}
