//! Error types: names, statuses, stream member names, bodies.

use bedrock_wire::{ErrorBody, ErrorType, WireError};

#[test]
fn names_and_statuses_follow_the_service_model() {
    let table: Vec<(&str, u16)> = ErrorType::ALL.iter().map(|t| (t.name(), t.status())).collect();
    assert_eq!(
        table,
        vec![
            ("ValidationException", 400),
            ("AccessDeniedException", 403),
            ("ResourceNotFoundException", 404),
            ("ModelTimeoutException", 408),
            ("ServiceQuotaExceededException", 400),
            ("ThrottlingException", 429),
            ("ModelNotReadyException", 429),
            ("ModelErrorException", 424),
            ("ModelStreamErrorException", 424),
            ("InternalServerException", 500),
            ("ServiceUnavailableException", 503),
            ("ConflictException", 400),
            ("UnknownOperationException", 404),
            ("MissingAuthenticationTokenException", 403),
            ("UnrecognizedClientException", 403),
            ("InvalidSignatureException", 403),
        ]
    );
}

#[test]
fn from_name_accepts_shape_names_stream_members_and_namespaced_headers() {
    for t in ErrorType::ALL {
        assert_eq!(ErrorType::from_name(t.name()), Some(t));
        if let Some(member) = t.stream_member() {
            assert_eq!(ErrorType::from_name(member), Some(t));
            assert!(member.starts_with(|c: char| c.is_ascii_lowercase()));
        }
    }
    assert_eq!(
        ErrorType::from_name("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        Some(ErrorType::Throttling)
    );
    assert_eq!(ErrorType::from_name("NoSuchThing"), None);
    assert_eq!(ErrorType::ModelNotReady.stream_member(), None);
}

#[test]
fn error_body_json_has_message_and_optional_members() {
    assert_eq!(
        String::from_utf8(ErrorBody::new("Model is not ready").to_json()).unwrap(),
        r#"{"message":"Model is not ready"}"#
    );
    let body = ErrorBody {
        message: "m".into(),
        original_status_code: Some(503),
        original_message: None,
        resource_name: Some("arn:x".into()),
    };
    assert_eq!(
        String::from_utf8(body.to_json()).unwrap(),
        r#"{"message":"m","originalStatusCode":503,"resourceName":"arn:x"}"#
    );
}

#[test]
fn wire_errors_map_to_validation_with_client_messages() {
    let e = bedrock_wire::parse_converse_request(br#"{"messages": [{"role": "robot", "content": []}]}"#).unwrap_err();
    assert_eq!(e.error_type(), ErrorType::Validation);
    let text = e.client_message();
    assert!(
        text.starts_with("Malformed input request: messages.0.role: unknown variant `robot`"),
        "{text}"
    );
    let e = WireError::validation("messages", "A conversation must start with a user message.");
    assert_eq!(e.client_message(), "A conversation must start with a user message.");
    assert_eq!(e.to_string(), "A conversation must start with a user message.");
    assert_eq!(
        WireError::Truncated { remaining: 3 }.error_type(),
        ErrorType::InternalServer
    );
}
