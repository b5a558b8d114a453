//! The router end to end without a network: the gate in front of every route, the page in both languages, the
//! registry's add/export/remove, and bad requests named.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use converse_agent::tools::{Approver, BoxFuture};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::{Host, ImportEnd, ImportRequest, ImportedModel, Ui};

struct Fake {
    dir: PathBuf,
}

impl Host for Fake {
    fn registry_file(&self) -> PathBuf {
        self.dir.join("models.json")
    }
    fn sessions_dir(&self) -> PathBuf {
        self.dir.join("sessions")
    }
    fn region(&self) -> String {
        "us-east-1".into()
    }
    fn target(&self) -> String {
        "a test".into()
    }
    fn imported_models(&self) -> BoxFuture<'_, Result<Vec<ImportedModel>, String>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn agent(&self, model: String, _: Approver) -> BoxFuture<'_, Result<converse_agent::Agent, String>> {
        Box::pin(async move { Err(format!("no agent for {model} in this test")) })
    }
    fn import(
        &self,
        _: ImportRequest,
        _: Arc<dyn bedrock_import::Progress>,
    ) -> BoxFuture<'_, Result<ImportEnd, String>> {
        Box::pin(async { Err("no imports in this test".into()) })
    }
}

async fn call(
    ui: &Ui,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = ui
        .router()
        .oneshot(req.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn every_route_is_behind_the_token_and_the_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ui = Ui::new(
        Arc::new(Fake {
            dir: dir.path().to_path_buf(),
        }),
        8777,
    );
    let url = ui.url("http://127.0.0.1:8777");
    let token = url.split("token=").nth(1).expect("a token").to_string();

    for path in [
        "/ui/",
        "/ui",
        "/ui/assets/app.js",
        "/ui/api/models",
        "/ui/api/sessions",
        "/ui/nothing",
    ] {
        let (status, _, body) = call(&ui, "GET", path, &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            !body.contains("<html") && !body.contains("use strict"),
            "{path}: {body}"
        );
    }
    let (status, _, _) = call(&ui, "POST", "/ui/api/chat", &[], r#"{"text": "hi"}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers, _) = call(&ui, "GET", &format!("/ui/?token={token}"), &[], "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/");
    let set = headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().expect("name=value").to_string();
    assert_eq!(ui.url("http://x"), "http://x/ui/", "the token is spent");
    let (status, _, _) = call(&ui, "GET", &format!("/ui/?token={token}"), &[], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let c = [("cookie", cookie.as_str())];
    let (status, _, page) = call(&ui, "GET", "/ui/", &c, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<html lang=\"en\">") && page.contains("id=\"models-table\""),
        "{page}"
    );
    let ja = [
        ("cookie", cookie.as_str()),
        ("accept-language", "ja-JP,ja;q=0.9,en;q=0.5"),
    ];
    let (_, _, page) = call(&ui, "GET", "/ui/", &ja, "").await;
    assert!(page.contains("<html lang=\"ja\">") && page.contains("モデルレジストリ"));
    let (_, headers, page) = call(&ui, "GET", "/ui/?lang=ja", &c, "").await;
    assert!(page.contains("<html lang=\"ja\">"));
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .starts_with("cmi_lang=ja")
    );
    let (status, headers, js) = call(&ui, "GET", "/ui/assets/app.js", &c, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    assert!(js.contains("function markdown"));

    // The registry: add (JSON5, as models.ts pastes), export as `cmi models export` does, remove.
    let entry = r#"{baseId: "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl", name: "mine",
        provider: "custom", category: "text", toolUse: true, maxTokensLimit: 1024, availability: {base: ["us-east-1"]}}"#;
    let (status, _, body) = call(&ui, "POST", "/ui/api/models", &c, entry).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, page) = call(&ui, "GET", "/ui/", &c, "").await;
    assert!(page.contains("data-act=\"remove\" data-name=\"mine\""));
    let (status, _, ts) = call(&ui, "GET", "/ui/api/export?name=mine", &c, "").await;
    assert_eq!(status, StatusCode::OK);
    let reg = model_registry::Registry::load(&dir.path().join("models.json")).expect("registry");
    assert_eq!(
        ts,
        model_registry::export::bedrock_engineer(reg.find("mine").expect("saved"))
    );
    let (status, _, body) = call(&ui, "POST", "/ui/api/models", &c, "{baseId: 3}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("baseId"), "{body}");
    let (status, _, _) = call(&ui, "DELETE", "/ui/api/model?name=mine", &c, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(&ui, "GET", "/ui/api/export?name=mine", &c, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("\\\"mine\\\""), "{body}");

    // Chat and import requests that cannot go anywhere say why.
    let json = [("cookie", cookie.as_str()), ("content-type", "application/json")];
    let (status, _, body) = call(&ui, "POST", "/ui/api/chat", &json, r#"{"text": "hi"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("no model given"), "{body}");
    let (status, _, body) = call(
        &ui,
        "POST",
        "/ui/api/chat",
        &json,
        r#"{"text": "hi", "session": "../etc"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid session ID"), "{body}");
    let (status, _, body) = call(&ui, "POST", "/ui/api/chat", &json, r#"{"text": "hi", "model": "tiny"}"#).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no agent for tiny"), "{body}");
    let (status, _, body) = call(
        &ui,
        "POST",
        "/ui/api/import",
        &json,
        r#"{"source": "/x", "name": "bad name!"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = call(
        &ui,
        "POST",
        "/ui/api/import",
        &json,
        r#"{"source": "/x", "name": "ok-name"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("\"t\":\"error\"") && body.contains("no imports in this test"),
        "{body}"
    );
    let (_, _, body) = call(&ui, "GET", "/ui/api/sessions", &c, "").await;
    assert_eq!(body, "[]");
}
