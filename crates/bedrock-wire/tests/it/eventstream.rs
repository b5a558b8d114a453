//! Event-stream framing: independent frame check against the spec (SM-ES), round trips, corruption, truncation.

use base64::Engine as _;
use bedrock_wire::eventstream::{
    EventStreamDecoder, StreamMessage, decode_all, encode_chunk, encode_error, encode_event, encode_exception,
    encode_exception_body,
};
use bedrock_wire::{ErrorBody, WireError};
use proptest::prelude::*;

/// Parses one frame by hand, per the layout in bedrock-cmi.md §3.5, checking both CRCs with crc32fast.
/// Returns (headers as (name, string value), payload, frame length).
fn parse_frame_by_hand(frame: &[u8]) -> (Vec<(String, String)>, Vec<u8>, usize) {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let total = be(&frame[0..4]) as usize;
    let headers_len = be(&frame[4..8]) as usize;
    assert_eq!(be(&frame[8..12]), crc32fast::hash(&frame[0..8]), "prelude crc");
    assert_eq!(
        be(&frame[total - 4..total]),
        crc32fast::hash(&frame[0..total - 4]),
        "message crc"
    );
    let mut headers = Vec::new();
    let mut at = 12;
    while at < 12 + headers_len {
        let name_len = frame[at] as usize;
        let name = String::from_utf8(frame[at + 1..at + 1 + name_len].to_vec()).unwrap();
        at += 1 + name_len;
        assert_eq!(frame[at], 7, "header {name} is a string (type 7)");
        let value_len = u16::from_be_bytes([frame[at + 1], frame[at + 2]]) as usize;
        let value = String::from_utf8(frame[at + 3..at + 3 + value_len].to_vec()).unwrap();
        at += 3 + value_len;
        headers.push((name, value));
    }
    assert_eq!(at, 12 + headers_len);
    (headers, frame[at..total - 4].to_vec(), total)
}

fn sorted(mut h: Vec<(String, String)>) -> Vec<(String, String)> {
    h.sort();
    h
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
}

#[test]
fn crc_checker_matches_the_published_test_vectors() {
    // Frame 1 of bedrock-cmi.md §3.5: payload {"foo": "bar"}, no headers.
    let payload = br#"{"foo": "bar"}"#;
    let mut frame = vec![0, 0, 0, 0x1e, 0, 0, 0, 0];
    assert_eq!(crc32fast::hash(&frame), 0xBAF2F68A);
    frame.extend_from_slice(&0xBAF2F68Au32.to_be_bytes());
    frame.extend_from_slice(payload);
    assert_eq!(crc32fast::hash(&frame), 0xAE7258E4);
    // Frame 2: same payload plus header content-type = application/json.
    let mut frame = Vec::new();
    frame.extend_from_slice(&62u32.to_be_bytes());
    frame.extend_from_slice(&32u32.to_be_bytes());
    assert_eq!(crc32fast::hash(&frame), 0x405DF946);
    frame.extend_from_slice(&0x405DF946u32.to_be_bytes());
    frame.push(12);
    frame.extend_from_slice(b"content-type");
    frame.push(7);
    frame.extend_from_slice(&16u16.to_be_bytes());
    frame.extend_from_slice(b"application/json");
    frame.extend_from_slice(payload);
    assert_eq!(crc32fast::hash(&frame), 0x6FA2BF3B);
    frame.extend_from_slice(&0x6FA2BF3Bu32.to_be_bytes());
    let (headers, body, len) = parse_frame_by_hand(&frame);
    assert_eq!(headers, pairs(&[("content-type", "application/json")]));
    assert_eq!(body, payload);
    assert_eq!(len, 62);
}

#[test]
fn event_frame_has_the_three_event_headers_and_the_payload() {
    let payload = br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#;
    let frame = encode_event("contentBlockDelta", payload).unwrap();
    let (headers, body, len) = parse_frame_by_hand(&frame);
    assert_eq!(len, frame.len());
    assert_eq!(
        sorted(headers),
        pairs(&[
            (":event-type", "contentBlockDelta"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ])
    );
    assert_eq!(body, payload);
}

#[test]
fn exception_frame_carries_exception_type_and_message_body() {
    let frame = encode_exception("throttlingException", "Too many requests, please wait").unwrap();
    let (headers, body, _) = parse_frame_by_hand(&frame);
    assert_eq!(
        sorted(headers),
        pairs(&[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ])
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, serde_json::json!({"message": "Too many requests, please wait"}));

    let body = ErrorBody {
        message: "model failed".into(),
        original_status_code: Some(500),
        original_message: Some("boom".into()),
        resource_name: None,
    };
    let frame = encode_exception_body("modelStreamErrorException", &body).unwrap();
    let messages = decode_all(&frame).unwrap();
    let StreamMessage::Exception {
        exception_type,
        payload,
    } = &messages[0]
    else {
        panic!("expected an exception, got {messages:?}");
    };
    assert_eq!(exception_type, "modelStreamErrorException");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(payload).unwrap(),
        serde_json::json!({"message": "model failed", "originalStatusCode": 500, "originalMessage": "boom"})
    );
}

#[test]
fn unmodelled_error_frame_round_trips_and_long_messages_are_cut() {
    let frame = encode_error("InternalFailure", "it broke").unwrap();
    let (headers, body, _) = parse_frame_by_hand(&frame);
    assert!(body.is_empty());
    assert_eq!(
        sorted(headers),
        pairs(&[
            (":error-code", "InternalFailure"),
            (":error-message", "it broke"),
            (":message-type", "error"),
        ])
    );
    let long = "é".repeat(20_000); // 40 000 bytes, over the 32 767-byte header value limit
    let decoded = decode_all(&encode_error("E", &long).unwrap()).unwrap();
    let StreamMessage::Error { code, message } = &decoded[0] else {
        panic!("expected an error message");
    };
    assert_eq!(code, "E");
    assert_eq!(message.len(), 32_766);
    assert!(long.starts_with(message.as_str()));
}

#[test]
fn chunk_event_wraps_the_inner_json_in_base64() {
    let inner = br#"{"generation":"Hello","stop_reason":null}"#;
    let messages = decode_all(&encode_chunk(inner).unwrap()).unwrap();
    let StreamMessage::Event { event_type, payload } = &messages[0] else {
        panic!("expected an event");
    };
    assert_eq!(event_type, "chunk");
    let json: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(json["bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, inner);
    assert_eq!(json.as_object().unwrap().len(), 1);
}

#[test]
fn corrupted_frame_is_rejected() {
    let mut frame = encode_event("messageStart", br#"{"role":"assistant"}"#)
        .unwrap()
        .to_vec();
    let last_payload_byte = frame.len() - 6;
    frame[last_payload_byte] ^= 0x01;
    assert!(matches!(decode_all(&frame), Err(WireError::Frame(_))));
    let mut frame = encode_event("messageStart", b"{}").unwrap().to_vec();
    frame[9] ^= 0x80; // prelude CRC
    assert!(matches!(decode_all(&frame), Err(WireError::Frame(_))));
}

#[test]
fn truncated_stream_is_reported_with_the_leftover() {
    let frame = encode_event("messageStart", br#"{"role":"assistant"}"#).unwrap();
    let mut decoder = EventStreamDecoder::new();
    assert!(decoder.push(&frame[..frame.len() - 3]).unwrap().is_empty());
    match decoder.finish() {
        Err(WireError::Truncated { remaining }) => assert_eq!(remaining, frame.len() - 3),
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Five bytes: not even a prelude.
    assert!(matches!(
        decode_all(&frame[..5]),
        Err(WireError::Truncated { remaining: 5 })
    ));
}

#[test]
fn oversized_payload_is_refused() {
    let payload = vec![b' '; bedrock_wire::eventstream::MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        encode_event("chunk", &payload),
        Err(WireError::PayloadTooLarge { .. })
    ));
}

#[derive(Debug, Clone)]
enum Msg {
    Event(String, Vec<u8>),
    Exception(String, String),
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (
            "[a-zA-Z][a-zA-Z0-9_-]{0,40}",
            proptest::collection::vec(any::<u8>(), 0..600)
        )
            .prop_map(|(t, p)| Msg::Event(t, p)),
        ("[a-z][a-zA-Z]{0,30}", any::<String>()).prop_map(|(t, m)| Msg::Exception(t, m)),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips_across_arbitrary_splits(
        msgs in proptest::collection::vec(msg_strategy(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            let frame = match m {
                Msg::Event(t, p) => encode_event(t, p).unwrap(),
                Msg::Exception(t, text) => encode_exception(t, text).unwrap(),
            };
            stream.extend_from_slice(&frame);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = EventStreamDecoder::new();
        let mut decoded = Vec::new();
        for w in points.windows(2) {
            decoded.extend(decoder.push(&stream[w[0]..w[1]]).unwrap());
        }
        decoder.finish().unwrap();
        prop_assert_eq!(decoded.len(), msgs.len());
        for (m, d) in msgs.iter().zip(&decoded) {
            match (m, d) {
                (Msg::Event(t, p), StreamMessage::Event { event_type, payload }) => {
                    prop_assert_eq!(t, event_type);
                    prop_assert_eq!(&p[..], &payload[..]);
                }
                (Msg::Exception(t, text), StreamMessage::Exception { exception_type, payload }) => {
                    prop_assert_eq!(t, exception_type);
                    let body: ErrorBody = serde_json::from_slice(payload).unwrap();
                    prop_assert_eq!(&body.message, text);
                }
                other => prop_assert!(false, "kind changed: {:?}", other),
            }
        }
    }
}

proptest! {
    /// The decoder is fed untrusted bytes (a client reading a server, or the reverse): it must return errors, never
    /// panic, whatever it gets, and a valid frame with any one byte changed must be refused.
    #[test]
    fn decoder_never_panics_on_garbage(
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        flip in (any::<prop::sample::Index>(), 1u8..=255),
    ) {
        let _ = decode_all(&garbage);
        const PAYLOAD: &[u8] = br#"{"contentBlockIndex":0,"delta":{"text":"x"}}"#;
        let mut frame = encode_event("contentBlockDelta", PAYLOAD).unwrap().to_vec();
        // One changed byte (a CRC-32 detects every single-byte error).
        let i = flip.0.index(frame.len());
        frame[i] ^= flip.1;
        // Whichever field the byte is in (lengths, CRCs, headers, payload), the frame is refused.
        prop_assert!(decode_all(&frame).is_err(), "byte {} changed, frame still decoded", i);
    }
}
