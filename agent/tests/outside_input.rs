//! Property test of the agent's decoders as a client reaches them: arbitrary
//! text and binary messages over one WebSocket. Every refusal is an `error`
//! with a known code and a bounded message, and the connection carries on.

mod common;

use std::cell::RefCell;

use common::*;
use dispatch_api::ErrorCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Message types whose refusals are under test (starting sessions is not:
/// a well-formed start succeeds).
const TYPES: &[&str] = &[
    "terminal.write",
    "terminal.resize",
    "claude.send",
    "claude.permission",
    "claude.interrupt",
    "session.attach",
    "session.detach",
    "session.stop",
    "session.list",
];

const FIELDS: &[&str] = &[
    "id",
    "since",
    "data",
    "cols",
    "rows",
    "input",
    "requestId",
    "allow",
    "type",
];

#[derive(Debug, Clone)]
enum Input {
    Text(String),
    Binary(Vec<u8>),
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,70}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|v| json!(v)),
    ]
}

fn arb_input() -> impl Strategy<Value = Input> {
    let message = (
        prop_oneof![
            prop::sample::select(TYPES.to_vec()).prop_map(str::to_owned),
            ".{0,30}"
        ],
        prop::collection::vec((prop::sample::select(FIELDS.to_vec()), arb_value()), 0..5),
    )
        .prop_map(|(ty, fields)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), Value::from(ty));
            for (k, v) in fields {
                m.insert(k.to_owned(), v);
            }
            Input::Text(Value::Object(m).to_string())
        });
    prop_oneof![
        message,
        ".{0,200}".prop_map(Input::Text),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Input::Binary),
        // Input frames with a plausible header.
        ("[a-z0-9]{0,70}", prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(id, data)| {
            let mut b = vec![3u8, id.len() as u8];
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&data);
            Input::Binary(b)
        }),
    ]
}

#[test]
fn any_message_gets_a_reply_or_a_coded_error_and_the_connection_carries_on() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let agent = Agent::start(&[]);
    let client = RefCell::new(Some(rt.block_on(agent.connect())));
    let mut runner = TestRunner::new(Config::with_cases(256));
    runner
        .run(&arb_input(), |input| {
            let mut c = client.borrow_mut().take().expect("the connection");
            let (c, replies) = rt.block_on(async move {
                match &input {
                    Input::Text(t) => c.send_text(t.clone()).await,
                    Input::Binary(b) => c.send_binary(b.clone()).await,
                }
                // Requests are handled in order: the list's reply comes after
                // whatever the input caused.
                c.send(json!({"type": "session.list"})).await;
                let replies = c.collect_until_type("session.list").await;
                (c, replies)
            });
            *client.borrow_mut() = Some(c);
            for r in replies.iter().filter(|r| r["type"] == "error") {
                let code: Result<ErrorCode, _> = serde_json::from_value(r["code"].clone());
                prop_assert!(code.is_ok(), "{r}");
                prop_assert_ne!(code.ok(), Some(ErrorCode::Internal), "{}", r);
                let message = r["message"].as_str().unwrap_or_default();
                prop_assert!(!message.is_empty() && message.len() <= 512, "{r}");
            }
            Ok(())
        })
        .unwrap();
}
