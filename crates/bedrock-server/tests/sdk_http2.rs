//! The Rust SDK over HTTP/2 as well as HTTP/1.1. Against an `http://` endpoint the SDK's own client speaks
//! HTTP/1.1 (it negotiates HTTP/2 only through TLS ALPN), so the HTTP/2 run gives the same SDK clients an HTTP client
//! of hyper's with HTTP/2 prior knowledge (h2c), as a proxy or service mesh in front of Bedrock would: `:authority`
//! instead of `host`, and every call multiplexed on one connection. Both runs drive S3, the control plane,
//! Converse, ConverseStream with a forced tool call, InvokeModel and InvokeModelWithResponseStream on a tiny model,
//! and see the same answers (greedy decoding).

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message, Tool, ToolChoice,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bedrock_server::RunningServer;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// hyper's client with HTTP/2 only, prior knowledge: no upgrade, no ALPN.
#[derive(Clone, Debug)]
struct H2c(Client<TcpConnector, SdkBody>);

impl H2c {
    fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).http2_only(true).build_http())
    }
}

impl HttpConnector for H2c {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            assert_eq!(response.version(), http::Version::HTTP_2, "the h2c client spoke HTTP/2");
            let (parts, body) = response.into_parts();
            HttpResponse::try_from(http::Response::from_parts(parts, SdkBody::from_body_1_x(body)))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

impl HttpClient for H2c {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

struct Clients {
    s3: aws_sdk_s3::Client,
    bedrock: aws_sdk_bedrock::Client,
    runtime: aws_sdk_bedrockruntime::Client,
}

/// The test crate's SDK clients, with `http` as their HTTP client when given (else the SDK's default).
fn clients(server: &RunningServer, http: Option<SharedHttpClient>) -> Clients {
    let mut s3 = common::s3(server).config().to_builder();
    let mut bedrock = common::bedrock(server).config().to_builder();
    let mut runtime = common::runtime(server, 1).config().to_builder();
    if let Some(h) = http {
        s3.set_http_client(Some(h.clone()));
        bedrock.set_http_client(Some(h.clone()));
        runtime.set_http_client(Some(h));
    }
    Clients {
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        bedrock: aws_sdk_bedrock::Client::from_conf(bedrock.build()),
        runtime: aws_sdk_bedrockruntime::Client::from_conf(runtime.build()),
    }
}

fn weather_tools() -> ToolConfiguration {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
                        "required": ["city"], "additionalProperties": false});
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Weather for a city")
                .input_schema(ToolInputSchema::Json(document(&schema)))
                .build()
                .expect("tool spec"),
        ))
        .tool_choice(ToolChoice::Any(
            aws_sdk_bedrockruntime::types::AnyToolChoice::builder().build(),
        ))
        .build()
        .expect("tool config")
}

/// A JSON value as the SDK's `Document`.
fn document(v: &Value) -> aws_smithy_types::Document {
    use aws_smithy_types::{Document, Number};
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => n
            .as_u64()
            .map(|u| Document::Number(Number::PosInt(u)))
            .or_else(|| n.as_i64().map(|i| Document::Number(Number::NegInt(i))))
            .unwrap_or_else(|| Document::Number(Number::Float(n.as_f64().unwrap_or_default()))),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(document).collect()),
        Value::Object(o) => Document::Object(o.iter().map(|(k, v)| (k.clone(), document(v))).collect()),
    }
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_string()))
        .build()
        .expect("message")
}

/// One pass over every API; returns what the model said, for comparing the two transports.
async fn drive(c: &Clients, model_arn: &str, tag: &str) -> Vec<String> {
    let mut said = Vec::new();
    // S3: a bucket, an object back, a listing.
    let bucket = format!("rust-{tag}");
    c.s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    c.s3.put_object()
        .bucket(&bucket)
        .key("k")
        .body(vec![7u8; 100_000].into())
        .send()
        .await
        .expect("PutObject");
    let got =
        c.s3.get_object()
            .bucket(&bucket)
            .key("k")
            .send()
            .await
            .expect("GetObject");
    assert_eq!(got.body.collect().await.expect("body").into_bytes().len(), 100_000);
    // The control plane.
    let models = c
        .bedrock
        .list_imported_models()
        .send()
        .await
        .expect("ListImportedModels");
    assert!(models.model_summaries().iter().any(|m| m.model_arn() == model_arn));

    let inference = InferenceConfiguration::builder()
        .max_tokens(12)
        .temperature(0.0)
        .build();
    let r = c
        .runtime
        .converse()
        .model_id(model_arn)
        .messages(user("Hello"))
        .inference_config(inference.clone())
        .send()
        .await
        .expect("Converse");
    let text = r
        .output()
        .and_then(|o| o.as_message().ok())
        .map(|m| format!("{:?}", m.content()));
    said.push(text.expect("a message"));

    let mut stream = c
        .runtime
        .converse_stream()
        .model_id(model_arn)
        .messages(user("Weather in Paris?"))
        .tool_config(weather_tools())
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(64)
                .temperature(0.0)
                .build(),
        )
        .send()
        .await
        .expect("ConverseStream");
    let (mut input, mut stop) = (String::new(), None);
    while let Some(ev) = stream.stream.recv().await.expect("stream event") {
        match ev {
            ConverseStreamOutput::ContentBlockDelta(d) => {
                if let Some(Ok(t)) = d.delta().map(|d| d.as_tool_use()) {
                    input.push_str(t.input());
                }
            }
            ConverseStreamOutput::MessageStop(s) => stop = Some(s.stop_reason().as_str().to_string()),
            _ => {}
        }
    }
    assert_eq!(stop.as_deref(), Some("tool_use"));
    let call: Value = serde_json::from_str(&input).expect("tool input is JSON");
    assert!(
        ["Paris", "Oslo"].contains(&call["city"].as_str().unwrap_or_default()),
        "{call}"
    );
    said.push(input);

    let body = json!({"prompt": "Hello", "max_gen_len": 8, "temperature": 0}).to_string();
    let out = c
        .runtime
        .invoke_model()
        .model_id(model_arn)
        .content_type("application/json")
        .body(Blob::new(body.clone()))
        .send()
        .await
        .expect("InvokeModel");
    let v: Value = serde_json::from_slice(out.body().as_ref()).expect("json");
    said.push(v["generation"].as_str().expect("generation").to_string());

    let mut s = c
        .runtime
        .invoke_model_with_response_stream()
        .model_id(model_arn)
        .content_type("application/json")
        .body(Blob::new(body))
        .send()
        .await
        .expect("InvokeModelWithResponseStream");
    let mut generation = String::new();
    while let Some(ev) = s.body.recv().await.expect("chunk") {
        let chunk = ev.as_chunk().expect("a chunk");
        let v: Value = serde_json::from_slice(chunk.bytes().expect("bytes").as_ref()).expect("chunk json");
        generation.push_str(v["generation"].as_str().unwrap_or_default());
    }
    assert_eq!(generation, said[2], "the stream says what InvokeModel said");
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_works_over_http2_and_http1() {
    let local = common::start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), test_support::Family::Qwen2).expect("tiny model");
    // Qwen's tool prompt needs more than the tiny model's 512-token window in a byte-level vocabulary.
    bedrock_server::testing::set_context_length(dir.path(), 4096);
    let model = bedrock_server::testing::import_dir(&local.server, dir.path(), "models", "tiny").await;

    let h1 = drive(&clients(&local.server, None), &model.model_arn, "h1").await;
    let h2 = drive(
        &clients(&local.server, Some(SharedHttpClient::new(H2c::new()))),
        &model.model_arn,
        "h2",
    )
    .await;
    assert_eq!(h1, h2, "greedy answers are the same over either transport");
}

/// Sends `PUT /bucket` (CreateBucket) over HTTP/2 on a connection of its own, with `:authority` `send_as`,
/// SigV4-signed for `signed_for` (unsigned when `None`); returns the status.
async fn h2_create_bucket(server: &RunningServer, bucket: &str, signed_for: Option<&str>, send_as: &str) -> u16 {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let path = format!("/{bucket}");
    let mut req = http::Request::builder()
        .method("PUT")
        .uri(format!("http://{send_as}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    if let Some(authority) = signed_for {
        let c = server.credentials();
        let identity = common::sdk_credentials(&c.access_key_id, &c.secret_access_key).into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(server.region())
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        // The signer takes the authority from the URL it is given: the one signed for.
        let signable = SignableRequest::new(
            "PUT",
            format!("http://{authority}{path}"),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut req);
    }
    let addr = server.endpoint_url().trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_signed_for_another_authority_tampered_or_unsigned_are_refused_and_change_nothing() {
    let local = common::start(true).await;
    let server = &local.server;
    let here = server.endpoint_url().trim_start_matches("http://").to_string();
    let s3 = common::s3(server);
    // Signed for another authority, sent here.
    assert_eq!(
        h2_create_bucket(server, "other-authority", Some("s3.us-east-1.example:443"), &here).await,
        403
    );
    // Signed for this server, `:authority` changed on the way.
    assert_eq!(
        h2_create_bucket(server, "tampered", Some(&here), "127.0.0.2:1").await,
        403
    );
    // Not signed at all.
    assert_eq!(h2_create_bucket(server, "unsigned", None, &here).await, 403);
    let buckets = s3.list_buckets().send().await.expect("ListBuckets");
    assert!(
        buckets.buckets().is_empty(),
        "a refused request made a bucket: {:?}",
        buckets.buckets()
    );
    // The same request signed for this server goes through, so the refusals above were the signature's.
    assert_eq!(h2_create_bucket(server, "fine", Some(&here), &here).await, 200);
    s3.head_bucket().bucket("fine").send().await.expect("the bucket exists");
}
