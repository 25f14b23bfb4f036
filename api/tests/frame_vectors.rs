//! The golden frames in `tests/vectors/frames.json`, which the web UI's codec
//! is checked against too (`web/test/frame-vectors.test.ts`): both sides
//! encode and decode the same bytes and refuse the same bad ones.

use std::path::Path;

use dispatch_api::{Frame, FrameBuf, FrameKind, SessionId};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    frames: Vec<Good>,
    invalid: Vec<Bad>,
}

#[derive(Deserialize)]
struct Good {
    name: String,
    kind: u8,
    id: String,
    offset: String,
    payload: String,
    bytes: String,
}

#[derive(Deserialize)]
struct Bad {
    name: String,
    bytes: String,
    error: String,
}

fn vectors() -> Vectors {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/frames.json");
    let text = std::fs::read_to_string(&path).expect("read frames.json");
    serde_json::from_str(&text).expect("frames.json has the expected shape")
}

fn kind(b: u8) -> FrameKind {
    match b {
        1 => FrameKind::Output,
        2 => FrameKind::Snapshot,
        3 => FrameKind::Input,
        4 => FrameKind::Range,
        _ => panic!("no frame kind {b}"),
    }
}

#[test]
fn golden_frames_encode_and_decode() {
    let v = vectors();
    assert!(v.frames.len() >= 4, "every kind has a vector");
    for g in &v.frames {
        let id = SessionId::new(&g.id).expect("vector id is valid");
        let offset: u64 = g.offset.parse().expect("offset is a u64");
        let payload = hex::decode(&g.payload).expect("payload is hex");
        let bytes = hex::decode(&g.bytes).expect("bytes is hex");

        let encoded = Frame::new(kind(g.kind), &id, offset, &payload).encode();
        assert_eq!(hex::encode(&encoded), g.bytes, "encode: {}", g.name);
        let built = FrameBuf::of(kind(g.kind), &id, offset, &payload).into_bytes();
        assert_eq!(hex::encode(&built), g.bytes, "encode (built): {}", g.name);

        let f = Frame::decode(&bytes).unwrap_or_else(|e| panic!("decode {}: {e}", g.name));
        assert_eq!(f.kind as u8, g.kind, "{}", g.name);
        assert_eq!(f.id, g.id, "{}", g.name);
        assert_eq!(f.offset, offset, "{}", g.name);
        assert_eq!(f.payload, &payload[..], "{}", g.name);
    }
}

#[test]
fn golden_bad_frames_are_refused_with_their_error() {
    let v = vectors();
    assert!(!v.invalid.is_empty());
    for b in &v.invalid {
        let bytes = hex::decode(&b.bytes).expect("bytes is hex");
        match Frame::decode(&bytes) {
            Ok(f) => panic!("{}: decoded as {f:?}", b.name),
            Err(e) => assert_eq!(e.to_string(), b.error, "{}", b.name),
        }
    }
}
