//! The control plane and S3 through the real `aws-sdk-bedrock` and `aws-sdk-s3` clients, SigV4 refusals, and state
//! surviving a restart.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_bedrock::types::{ModelDataSource, ModelImportJobStatus, S3DataSource, SortOrder, Tag};
use common::{Sign, bedrock, bedrock_client, import, raw, s3, s3_client, sdk_credentials, start, start_in};
use test_support::Family;

fn source(uri: &str) -> ModelDataSource {
    ModelDataSource::S3DataSource(S3DataSource::builder().s3_uri(uri).build().expect("source"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_generated_owner_only_and_readable() {
    let local = start(false).await;
    let path = local.dir.path().join("credentials");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("credentials file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials must be owner-only");
    }
    let read = bedrock_server::read_credentials(local.dir.path())
        .expect("read")
        .expect("present");
    assert_eq!(&read, local.server.credentials());
    let dir = local.dir;
    drop(local.server);
    // A restart keeps the same pair.
    let again = start_in(dir.path(), |_| {}).await;
    assert_eq!(again.credentials(), &read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_job_completes_and_models_are_listed_and_deleted() {
    let local = start(false).await;
    let server = &local.server;
    let (arn, job) = import(server, Family::Llama, "models", "tiny-llama").await;
    assert_eq!(
        job.status(),
        Some(&ModelImportJobStatus::Completed),
        "failure: {:?}",
        job.failure_message()
    );
    assert!(arn.starts_with("arn:aws:bedrock:us-east-1:"), "{arn}");
    let id = arn.rsplit('/').next().expect("id");
    assert!(
        id.len() == 12 && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{id}"
    );
    let model_arn = job.imported_model_arn().expect("importedModelArn").to_string();
    assert!(model_arn.contains(":imported-model/"), "{model_arn}");
    assert!(job.end_time().is_some());

    let br = bedrock(server);
    let m = br
        .get_imported_model()
        .model_identifier("tiny-llama")
        .send()
        .await
        .expect("get model");
    assert_eq!(m.model_arn(), Some(model_arn.as_str()));
    assert_eq!(m.model_architecture(), Some("llama"));
    assert_eq!(m.instruct_supported(), Some(true));
    assert_eq!(
        m.custom_model_units()
            .and_then(|c| c.custom_model_units_per_model_copy()),
        Some(1)
    );
    let by_arn = br
        .get_imported_model()
        .model_identifier(&model_arn)
        .send()
        .await
        .expect("get by arn");
    assert_eq!(by_arn.model_name(), Some("tiny-llama"));

    let list = br.list_imported_models().send().await.expect("list models");
    assert_eq!(list.model_summaries().len(), 1);

    br.delete_imported_model()
        .model_identifier(&model_arn)
        .send()
        .await
        .expect("delete");
    let err = br
        .get_imported_model()
        .model_identifier(&model_arn)
        .send()
        .await
        .expect_err("deleted");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_architecture_fails_like_the_service() {
    let local = start(false).await;
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), Family::Llama).expect("tiny");
    let cfg_path = model.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("read")).expect("json");
    cfg["model_type"] = "gpt2".into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write");
    let (_, job) = common::run_import_job(&local.server, model.path(), "models", "not-supported").await;
    assert_eq!(job.status(), Some(&ModelImportJobStatus::Failed));
    let msg = job.failure_message().expect("failureMessage");
    assert!(msg.contains("does not support the architecture (gpt2)"), "{msg}");
    let br = bedrock(&local.server);
    let err = br
        .get_imported_model()
        .model_identifier("not-supported")
        .send()
        .await
        .expect_err("no model");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_validates_is_idempotent_and_rejects_duplicates() {
    let local = start(false).await;
    let br = bedrock(&local.server);
    let s3 = s3(&local.server);
    s3.create_bucket().bucket("empty").send().await.expect("bucket");
    let create = |job: &str, model: &str| {
        br.create_model_import_job()
            .job_name(job)
            .imported_model_name(model)
            .role_arn("arn:aws:iam::123456789012:role/R")
            .model_data_source(source("s3://empty/nothing/"))
    };
    // Bad names and URIs.
    let e = create("bad name!", "m1").send().await.expect_err("bad job name");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert!(e.to_string().contains("jobName") || format!("{e:?}").contains("jobName"));
    let e = create("j1", "bad__name")
        .send()
        .await
        .expect_err("bad model name")
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let e = br
        .create_model_import_job()
        .job_name("j1")
        .imported_model_name("m1")
        .role_arn("not-an-arn")
        .model_data_source(source("s3://empty/x"))
        .send()
        .await
        .expect_err("bad role")
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let e = create("j1", "m1")
        .model_data_source(source("https://example.com/x"))
        .send()
        .await
        .expect_err("bad uri")
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");

    // Idempotency token.
    let a = create("j1", "m1")
        .client_request_token("tok-1")
        .send()
        .await
        .expect("first")
        .job_arn;
    let b = create("j1", "m1")
        .client_request_token("tok-1")
        .send()
        .await
        .expect("same token")
        .job_arn;
    assert_eq!(a, b);
    // Duplicate name without the token.
    let e = create("j1", "m2")
        .send()
        .await
        .expect_err("duplicate job")
        .into_service_error();
    assert!(e.is_conflict_exception(), "{e:?}");

    // The empty folder fails the job.
    let j = common::wait_job(&br, &a).await;
    assert_eq!(j.status(), Some(&ModelImportJobStatus::Failed));
    assert!(
        j.failure_message().expect("message").contains("No model files"),
        "{:?}",
        j.failure_message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_filters_sorts_and_paginates() {
    let local = start(false).await;
    let br = bedrock(&local.server);
    s3(&local.server)
        .create_bucket()
        .bucket("bkt1")
        .send()
        .await
        .expect("bucket");
    let mut arns = Vec::new();
    for i in 0..5 {
        let arn = br
            .create_model_import_job()
            .job_name(format!("job-{i}"))
            .imported_model_name(format!("model-{i}"))
            .role_arn("arn:aws:iam::123456789012:role/R")
            .model_data_source(source("s3://bkt1/none/"))
            .job_tags(Tag::builder().key("team").value("ml").build().expect("tag"))
            .send()
            .await
            .expect("create")
            .job_arn;
        arns.push(arn);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for a in &arns {
        common::wait_job(&br, a).await;
    }
    let asc = br
        .list_model_import_jobs()
        .sort_order(SortOrder::Ascending)
        .send()
        .await
        .expect("list");
    let names: Vec<&str> = asc.model_import_job_summaries().iter().map(|s| s.job_name()).collect();
    assert_eq!(names, ["job-0", "job-1", "job-2", "job-3", "job-4"]);
    let desc = br.list_model_import_jobs().send().await.expect("list");
    assert_eq!(desc.model_import_job_summaries()[0].job_name(), "job-4");

    let filtered = br
        .list_model_import_jobs()
        .name_contains("job-3")
        .send()
        .await
        .expect("list");
    assert_eq!(filtered.model_import_job_summaries().len(), 1);
    let failed = br
        .list_model_import_jobs()
        .status_equals(ModelImportJobStatus::Failed)
        .send()
        .await
        .expect("list");
    assert_eq!(failed.model_import_job_summaries().len(), 5);
    let done = br
        .list_model_import_jobs()
        .status_equals(ModelImportJobStatus::Completed)
        .send()
        .await
        .expect("list");
    assert!(done.model_import_job_summaries().is_empty());

    // Pagination through the SDK paginator, two per page.
    let pages: Vec<_> = br
        .list_model_import_jobs()
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(pages.len(), 3);
    let total: usize = pages
        .into_iter()
        .map(|p| p.expect("page").model_import_job_summaries().len())
        .sum();
    assert_eq!(total, 5);

    let e = br
        .list_model_import_jobs()
        .max_results(0)
        .send()
        .await
        .expect_err("bad max")
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let after = aws_sdk_bedrock::primitives::DateTime::from(SystemTime::now() + Duration::from_secs(60));
    let none = br
        .list_model_import_jobs()
        .creation_time_after(after)
        .send()
        .await
        .expect("list");
    assert!(none.model_import_job_summaries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_signature_get_403_and_touch_nothing() {
    let local = start(false).await;
    let server = &local.server;
    let body = br#"{"jobName":"x1","importedModelName":"m1","roleArn":"arn:aws:iam::123456789012:role/R","modelDataSource":{"s3DataSource":{"s3Uri":"s3://b/p/"}}}"#.to_vec();
    let ct = [("content-type", "application/json")];

    // Unsigned.
    let (st, h, _) = raw(server, "POST", "/model-import-jobs", &ct, body.clone(), None).await;
    assert_eq!(st, 403);
    assert_eq!(
        h.get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
        Some("MissingAuthenticationTokenException")
    );
    // Wrong secret.
    let mut bad = Sign::good(server, "bedrock");
    bad.secret_key = "wrong-secret".into();
    let (st, h, _) = raw(server, "POST", "/model-import-jobs", &ct, body.clone(), Some(bad)).await;
    assert_eq!(st, 403);
    assert_eq!(
        h.get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
        Some("InvalidSignatureException")
    );
    // Stale (20 minutes old).
    let mut stale = Sign::good(server, "bedrock");
    stale.time = SystemTime::now() - Duration::from_secs(1200);
    let (st, _, b) = raw(server, "POST", "/model-import-jobs", &ct, body.clone(), Some(stale)).await;
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&b));
    // Unknown key.
    let mut other = Sign::good(server, "bedrock");
    other.access_key = "AKIAOTHER".into();
    let (st, h, _) = raw(server, "POST", "/model-import-jobs", &ct, body.clone(), Some(other)).await;
    assert_eq!(st, 403);
    assert_eq!(
        h.get("x-amzn-errortype").and_then(|v| v.to_str().ok()),
        Some("UnrecognizedClientException")
    );
    // None of them created anything.
    let br = bedrock(server);
    assert!(
        br.list_model_import_jobs()
            .send()
            .await
            .expect("list")
            .model_import_job_summaries()
            .is_empty()
    );

    // A correctly signed raw request works, header and presigned forms.
    let (st, _, b) = raw(
        server,
        "GET",
        "/model-import-jobs?maxResults=5",
        &[],
        vec![],
        Some(Sign::good(server, "bedrock")),
    )
    .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let mut pre = Sign::good(server, "bedrock");
    pre.presigned = true;
    let (st, _, b) = raw(server, "GET", "/imported-models", &[], vec![], Some(pre)).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));

    // SDK clients with a wrong secret are refused too.
    let c = server.credentials();
    let e = bedrock_client(
        &server.endpoint_url(),
        server.region(),
        sdk_credentials(&c.access_key_id, "nope"),
    )
    .list_imported_models()
    .send()
    .await
    .expect_err("403");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
    let s3_bad = s3_client(
        &server.endpoint_url(),
        server.region(),
        sdk_credentials(&c.access_key_id, "nope"),
    );
    let e = s3_bad
        .create_bucket()
        .bucket("should-not-exist")
        .send()
        .await
        .expect_err("403");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
    let buckets = s3(server).list_buckets().send().await.expect("list buckets");
    assert!(buckets.buckets().is_empty(), "a refused request created a bucket");

    // Unsigned S3 PUT.
    s3(server).create_bucket().bucket("real").send().await.expect("bucket");
    let (st, _, _) = raw(server, "PUT", "/real/obj", &[], b"data".to_vec(), None).await;
    assert_eq!(st, 403);
    let e = s3(server)
        .head_object()
        .bucket("real")
        .key("obj")
        .send()
        .await
        .expect_err("absent");
    assert!(e.into_service_error().is_not_found());

    // Oversized Bedrock body.
    let big = vec![b' '; bedrock_server_max_body() + 10];
    let (st, _, _) = raw(
        server,
        "POST",
        "/model-import-jobs",
        &ct,
        big,
        Some(Sign::good(server, "bedrock")),
    )
    .await;
    assert_eq!(st, 413);
}

fn bedrock_server_max_body() -> usize {
    25_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_models_and_objects_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_in(dir.path(), |_| {}).await;
    let (arn, job) = import(&server, Family::Qwen2, "keep", "kept-model").await;
    assert_eq!(
        job.status(),
        Some(&ModelImportJobStatus::Completed),
        "{:?}",
        job.failure_message()
    );
    drop(server);
    let server = start_in(dir.path(), |_| {}).await;
    let br = bedrock(&server);
    let j = br
        .get_model_import_job()
        .job_identifier(&arn)
        .send()
        .await
        .expect("job after restart");
    assert_eq!(j.status(), Some(&ModelImportJobStatus::Completed));
    let j = br
        .get_model_import_job()
        .job_identifier("kept-model-job")
        .send()
        .await
        .expect("job by name");
    assert_eq!(j.job_arn(), Some(arn.as_str()));
    let m = br
        .get_imported_model()
        .model_identifier("kept-model")
        .send()
        .await
        .expect("model after restart");
    assert_eq!(m.model_architecture(), Some("qwen2"));
    let objs = s3(&server)
        .list_objects_v2()
        .bucket("keep")
        .prefix("kept-model/")
        .send()
        .await
        .expect("list");
    assert!(
        objs.contents()
            .iter()
            .any(|o| o.key() == Some("kept-model/config.json"))
    );
}
