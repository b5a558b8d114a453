//! The server's prefix-cache budget (`ServerConfig::prefix_cache_mb`, `cmi serve --prefix-cache-mb`) reaches the
//! engine of every model it loads: a conversation resent through Converse reuses the keys and values of the first
//! request within that budget, a budget of 0 keeps nothing, and the greedy answer is the same either way.

mod common;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
use common::{TestServer, import, runtime};
use test_support::Family;

/// The greedy answer to a short conversation, with its history resent as an agent resends it.
async fn turn(server: &TestServer, name: &str) -> String {
    let msg = |role, text: &str| {
        Message::builder()
            .role(role)
            .content(ContentBlock::Text(text.into()))
            .build()
            .expect("message")
    };
    let r = runtime(&server.server, 1)
        .converse()
        .model_id(name)
        .messages(msg(
            ConversationRole::User,
            "What is the capital of France? Answer in one word.",
        ))
        .messages(msg(ConversationRole::Assistant, "Paris."))
        .messages(msg(ConversationRole::User, "And of Norway?"))
        .inference_config(InferenceConfiguration::builder().max_tokens(8).temperature(0.0).build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("converse {name}: {e:?}"));
    let out = r.output().and_then(|o| o.as_message().ok()).expect("a message");
    out.content().iter().filter_map(|c| c.as_text().ok()).cloned().collect()
}

/// Two turns on a warm server with `budget_mb`; returns their answers and the model's prefix-cache figures.
async fn two_turns(budget_mb: u64) -> (String, String, infer_engine::PrefixCacheStats) {
    let server = TestServer::start_with(|c| {
        c.warm = true;
        c.prefix_cache_mb = Some(budget_mb);
    })
    .await;
    import(&server.server, Family::Llama, "prefix-models", "resent").await;
    let first = turn(&server, "resent").await;
    let second = turn(&server, "resent").await;
    let caches = server.server.prefix_caches();
    let (name, stats) = caches.into_iter().next().expect("the model is loaded");
    assert_eq!(name, "resent");
    (first, second, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_budget_reaches_the_engine_and_a_resent_conversation_reuses_it() {
    let (first, second, cached) = two_turns(2).await;
    assert_eq!(cached.budget_bytes, 2 << 20, "{cached:?}");
    assert_eq!(cached.lookups, 2, "{cached:?}");
    assert_eq!(
        cached.hits, 1,
        "the second request reuses the first's prefix: {cached:?}"
    );
    assert!(cached.reused_tokens >= 16, "{cached:?}");
    assert!(
        cached.held_bytes > 0 && cached.held_bytes <= cached.budget_bytes,
        "{cached:?}"
    );
    assert_eq!(first, second, "greedy answers with and without reuse");

    let (plain, again, off) = two_turns(0).await;
    assert_eq!(
        (off.budget_bytes, off.hits, off.blocks, off.held_bytes),
        (0, 0, 0, 0),
        "{off:?}"
    );
    assert_eq!(plain, again);
    assert_eq!(plain, first, "the cache changes no answer");
}
