//! Quantisation per model: the `cmi:quantize` import tag (what `cmi import --quantize` sends) decides how the engine
//! runs a model, a server's per-model setting wins over it, and the server-wide `quantize` applies to the rest. A tag
//! the engine cannot run is refused when the job is created, naming the value. A quantised model is quantised once,
//! by its import job, into a cache in its folder that every later start maps instead of quantising again.

mod common;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
use common::{TestServer, create_import_job, run_import_job_tagged, runtime, start_in};
use test_support::Family;

/// Greedy text of a short Converse (`attempts` rides out a cold start's `ModelNotReadyException`s).
async fn greedy_text(server: &bedrock_server::RunningServer, name: &str, attempts: u32) -> String {
    let r = runtime(server, attempts)
        .converse()
        .model_id(name)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("What is the capital of France?".into()))
                .build()
                .expect("message"),
        )
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(12)
                .temperature(0.0)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("converse {name}: {e:?}"));
    let out = r.output().and_then(|o| o.as_message().ok()).expect("a message");
    out.content().iter().filter_map(|c| c.as_text().ok()).cloned().collect()
}

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
        c.quantize = Some(bedrock_server::Quantize::Q8_0);
        c.model_quantize = vec![("pinned".into(), None)];
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_job_quantises_once_and_a_restarted_server_maps_the_cache() {
    let data = tempfile::tempdir().expect("tempdir");
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), Family::Llama).expect("tiny model");
    // Warm, so the model the import job loaded is the one that answers.
    let server = start_in(data.path(), |c| c.warm = true).await;
    let (_, job) = run_import_job_tagged(&server, model.path(), "q-cache", "cached", &[("cmi:quantize", "q8_0")]).await;
    assert_eq!(
        job.status(),
        Some(&aws_sdk_bedrock::types::ModelImportJobStatus::Completed),
        "{:?}",
        job.failure_message()
    );
    let at_import = server.quantised_loads();
    let (_, q) = at_import
        .iter()
        .find(|(n, _)| n == "cached")
        .expect("loaded by the job");
    assert!(q.quantised > 0 && q.mapped == 0 && q.cache_written, "{q:?}");
    let caches: Vec<_> = std::fs::read_dir(data.path().join("models"))
        .expect("models dir")
        .map(|e| e.expect("entry").path().join("cmi-quantised.bin"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(caches.len(), 1, "the job leaves the cache in the model's folder");
    let want = greedy_text(&server, "cached", 1).await;
    assert!(!want.is_empty());
    server.shutdown().await;

    // A new server on the same data directory, cold: the first Converse loads the model, mapping the cache.
    let again = start_in(data.path(), |_| {}).await;
    assert_eq!(greedy_text(&again, "cached", 20).await, want);
    let loads = again.quantised_loads();
    let (_, q2) = loads
        .iter()
        .find(|(n, _)| n == "cached")
        .expect("loaded after the restart");
    assert_eq!(
        (q2.quantised, q2.mapped, q2.cache_written),
        (0, q.quantised, false),
        "{q2:?}"
    );
}
