//! Quantisation per model: the `cmi:quantize` import tag (what `cmi import --quantize` sends) decides how the engine
//! runs a model, a server's per-model setting wins over it, and the server-wide `quantize` applies to the rest. A tag
//! the engine cannot run is refused when the job is created, naming the value.

mod common;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
use common::{TestServer, create_import_job, run_import_job_tagged, runtime};
use test_support::Family;

async fn answers(server: &TestServer, name: &str) {
    let r = runtime(&server.server, 1)
        .converse()
        .model_id(name)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Hello".into()))
                .build()
                .expect("message"),
        )
        .inference_config(InferenceConfiguration::builder().max_tokens(4).temperature(0.0).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("converse {name}: {e:?}"));
    assert!(r.usage().is_some_and(|u| u.output_tokens() > 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_runs_in_its_own_quantisation() {
    let server = TestServer::start_with(|c| {
        c.warm = true;
        c.quantize = Some("q8_0".into());
        c.model_quantize = vec![("pinned".into(), "none".into())];
    })
    .await;
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), Family::Llama).expect("tiny model");

    for (name, tags, expected) in [
        ("tagged", vec![("cmi:quantize", "q4_0")], Some("q4_0")),
        ("untagged", vec![], Some("q8_0")),
        ("as-stored", vec![("cmi:quantize", "none")], None),
        // The server's per-model setting wins over the tag.
        ("pinned", vec![("cmi:quantize", "q4k")], None),
    ] {
        let (_, job) = run_import_job_tagged(&server.server, model.path(), "q-models", name, &tags).await;
        assert_eq!(
            job.status(),
            Some(&aws_sdk_bedrock::types::ModelImportJobStatus::Completed),
            "{name}: {:?}",
            job.failure_message()
        );
        answers(&server, name).await;
        let loaded = server.server.loaded_models();
        let q = loaded
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not loaded: {loaded:?}"));
        assert_eq!(q.1.as_deref(), expected, "{name}: {loaded:?}");
    }

    let e = create_import_job(
        &server.server,
        model.path(),
        "q-models",
        "bad-q",
        &[("cmi:quantize", "q3")],
    )
    .await
    .expect_err("an unknown quantisation");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("\"q3\"") && msg.contains("q4k"), "{msg}");
}

#[tokio::test]
async fn a_bad_per_model_setting_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = bedrock_server::ServerConfig::new(dir.path().to_path_buf());
    config.model_quantize = vec![("m".into(), "q2".into())];
    let e = bedrock_server::start(config).await.expect_err("q2 is no quantisation");
    let msg = e.to_string();
    assert!(msg.contains("m=q2") && msg.contains("q8_0, q4k, q4_0 or none"), "{msg}");
}
