//! End to end on the real demo model: `cmi import --quantize q8_0` into a `cmi serve` the test runs, which then
//! loads the model quantised (its log says so), and structured output through the real `aws-sdk-bedrockruntime`
//! client: InvokeModel with a JSON schema (`response_format`), with a choice (`structured_outputs`), with a required
//! tool call (`tool_choice`), and Converse with `outputConfig`. SmolLM2-135M-Instruct follows none of these formats
//! reliably on its own; constrained decoding makes every answer valid.

use std::path::Path;
use std::process::Stdio;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, JsonSchemaDefinition, Message, OutputConfig, OutputFormat,
    OutputFormatStructure, OutputFormatType,
};
use serde_json::{Value, json};

mod common;

use common::{cmi_command, convert_demo, start_serve, text};

const MODEL: &str = "smol-q8";

fn command(home: &Path, args: &[&str]) -> std::process::Command {
    let mut c = cmi_command(home, &home.join("cache"), args);
    c.env("CMI_DATA_DIR", home.join("server"));
    c
}

/// A person, with short fields so that every answer fits the token limit.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

fn assert_person(v: &Value) {
    let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(o.len(), 2, "{v}");
    assert!(
        o["name"]
            .as_str()
            .is_some_and(|n| (1..=24).contains(&n.chars().count())),
        "{v}"
    );
    assert!(o["age"].as_u64().is_some_and(|a| a <= 120), "{v}");
}

async fn invoke(rt: &aws_sdk_bedrockruntime::Client, body: Value) -> Value {
    let out = rt
        .invoke_model()
        .model_id(MODEL)
        .content_type("application/json")
        .body(Blob::new(body.to_string().into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {body}: {e:?}"));
    serde_json::from_slice(out.body().as_ref()).expect("json body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_model_runs_quantised_and_answers_in_the_requested_format() {
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let model = home.join("smollm2");
    convert_demo(home, &model);

    let server_log = home.join("serve.log");
    let mut serve = command(home, &["serve", "--port", "0", "--warm"]);
    serve.env("CMI_LOG", "warn,infer_engine=info");
    let log = std::fs::File::create(&server_log).expect("create serve.log");
    let _serve = start_serve(serve, log.into(), &home.join("server/endpoint.json"));

    let out = command(
        home,
        &[
            "import",
            model.to_str().expect("utf-8"),
            "--name",
            MODEL,
            "--quantize",
            "q8_0",
            "--json",
        ],
    )
    .stdin(Stdio::null())
    .output()
    .expect("cmi import runs");
    assert!(out.status.success(), "cmi import failed\n{}", text(&out));
    let log = std::fs::read_to_string(&server_log).expect("serve.log");
    assert!(
        log.lines().any(|l| l.contains("engine loaded") && l.contains("Q8_0")),
        "the model did not load in q8_0:\n{log}"
    );

    let server = bedrock_server::find_running(&home.join("server"))
        .await
        .expect("the cmi serve is advertised");
    let creds = aws_credential_types::Credentials::new(
        &server.credentials.access_key_id,
        &server.credentials.secret_access_key,
        None,
        None,
        "test",
    );
    let rt = aws_sdk_bedrockruntime::Client::from_conf(
        aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new(server.region.clone()))
            .endpoint_url(&server.endpoint_url)
            .credentials_provider(creds)
            .build(),
    );

    // A JSON schema, greedy and sampled.
    for (temperature, seed) in [(0.0, 0), (0.9, 1), (0.9, 2)] {
        let v = invoke(
            &rt,
            json!({"messages": [{"role": "user", "content": "Describe a fictional person as JSON."}],
                   "max_tokens": 80, "temperature": temperature, "seed": seed,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": person_schema()}}}),
        )
        .await;
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "stop", "{v}");
        let content = c["message"]["content"].as_str().expect("content");
        assert_person(&serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content:?}")));
    }

    // One of a few answers.
    let v = invoke(
        &rt,
        json!({"prompt": "<|im_start|>user\nIs the sky green?<|im_end|>\n<|im_start|>assistant\n", "max_tokens": 10,
               "temperature": 0, "structured_outputs": {"choice": ["Yes", "No", "Sometimes"]}}),
    )
    .await;
    let answer = v["choices"][0]["text"].as_str().expect("text");
    assert!(["Yes", "No", "Sometimes"].contains(&answer), "{v}");

    // A tool call the model must make, with arguments valid for the tool.
    let v = invoke(
        &rt,
        json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}], "max_tokens": 60,
               "temperature": 0, "tool_choice": "required",
               "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                       "required": ["city"], "additionalProperties": false}}}]}),
    )
    .await;
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    let call = &c["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{v}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().expect("arguments")).expect("JSON arguments");
    assert!(args["city"].as_str().is_some_and(|c| !c.is_empty()), "{args}");

    // Converse with outputConfig.
    let r = rt
        .converse()
        .model_id(MODEL)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Describe a fictional person.".into()))
                .build()
                .expect("message"),
        )
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(80)
                .temperature(0.0)
                .build(),
        )
        .output_config(
            OutputConfig::builder()
                .text_format(
                    OutputFormat::builder()
                        .r#type(OutputFormatType::JsonSchema)
                        .structure(OutputFormatStructure::JsonSchema(
                            JsonSchemaDefinition::builder()
                                .schema(person_schema().to_string())
                                .name("person")
                                .build()
                                .expect("schema"),
                        ))
                        .build()
                        .expect("format"),
                )
                .build(),
        )
        .send()
        .await
        .expect("converse");
    let msg = r.output().expect("output").as_message().expect("message");
    let text: String = msg.content().iter().filter_map(|b| b.as_text().ok().cloned()).collect();
    assert_person(&serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")));
}
