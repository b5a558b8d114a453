//! End to end against the local Bedrock started by the test: tiny model folder → preflight → upload → import job
//! `Completed` → registry entry → a Converse call on the new ARN answers.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bedrock_import::{JobRequest, JobStatus, PollSettings, Registration, UploadPlan, UploadSettings, Uploader};
use test_support::{Family, tiny_model};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_model_imports_registers_and_answers() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = bedrock_server::ServerConfig::new(data.path().to_path_buf());
    config.warm = true;
    let server = bedrock_server::start(config).await.expect("local bedrock");
    let c = server.credentials();
    let creds = Credentials::new(&c.access_key_id, &c.secret_access_key, None, None, "test");
    let region = Region::new(server.region().to_string());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .endpoint_url(server.endpoint_url())
            .credentials_provider(creds.clone())
            .force_path_style(true)
            .build(),
    );
    let bedrock = aws_sdk_bedrock::Client::from_conf(
        aws_sdk_bedrock::Config::builder()
            .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrock::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(aws_sdk_bedrock::config::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "test",
            ))
            .build(),
    );

    let model = tempfile::tempdir().expect("tempdir");
    tiny_model(model.path(), Family::Llama).expect("tiny model");
    let report = model_folder::check(model.path()).expect("check");
    assert!(!report.has_errors(), "{:?}", report.findings);

    bedrock_import::ensure_bucket(&s3, "cmi-e2e", server.region(), true)
        .await
        .expect("bucket");
    let plan = UploadPlan::new(model.path(), &report.files, "cmi-e2e", "tiny");
    let upload = Uploader::new(s3, UploadSettings::default())
        .upload(&plan, &())
        .await
        .expect("upload");
    assert_eq!(upload.bytes_sent, upload.bytes_total);

    let digest = upload.digest();
    let req = JobRequest {
        job_name: bedrock_import::job_name_for("tiny", &digest),
        model_name: "tiny".into(),
        role_arn: None,
        s3_uri: plan.s3_uri(),
        client_request_token: Some(bedrock_import::client_request_token("tiny", &plan.s3_uri(), &digest, 0)),
        model_tags: vec![],
    };
    let job_arn = bedrock_import::create_job(&bedrock, &req).await.expect("create job");
    // The same token gives the same job back (a re-run after a crash does not start a second import).
    assert_eq!(
        bedrock_import::create_job(&bedrock, &req).await.expect("create again"),
        job_arn
    );
    let poll = PollSettings {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        factor: 2.0,
        timeout: Some(Duration::from_secs(120)),
    };
    let job = bedrock_import::wait_for_job(&bedrock, &job_arn, &poll, &())
        .await
        .expect("job completes");
    assert_eq!(job.status, JobStatus::Completed);
    let model_arn = job.model_arn.clone().expect("model arn");
    assert!(model_arn.contains(":imported-model/"), "{model_arn}");

    let registry = tempfile::tempdir().expect("tempdir");
    let file = registry.path().join("models.json");
    bedrock_import::register(
        &file,
        &Registration {
            name: "tiny".into(),
            model_arn: model_arn.clone(),
            provider: "meta".into(),
            region: server.region().to_string(),
            context_length: report.context_length,
            instruct_supported: report.instruct_supported,
            tool_use: report.converse_tools,
            model_source: Some(model.path().to_path_buf()),
            architecture: report.architecture.clone(),
        },
    )
    .expect("register");
    let reg = model_registry::Registry::load(&file).expect("load registry");
    assert_eq!(reg.find("tiny").map(|e| e.base_id.as_str()), Some(model_arn.as_str()));

    // Converse on the new ARN answers (random tiny weights: any text, but a real end_turn/max_tokens answer).
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
    let runtime = aws_sdk_bedrockruntime::Client::from_conf(
        aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "test",
            ))
            .build(),
    );
    let msg = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("Hello".into()))
        .build()
        .expect("message");
    let out = runtime
        .converse()
        .model_id(&model_arn)
        .messages(msg)
        .inference_config(InferenceConfiguration::builder().max_tokens(8).temperature(0.0).build())
        .send()
        .await
        .expect("converse answers");
    let usage = out.usage().expect("usage");
    assert!(usage.output_tokens() >= 1, "{usage:?}");
    assert!(usage.input_tokens() > 1, "{usage:?}");
}

/// The clients of a local Bedrock, for the pipeline tests.
fn clients(server: &bedrock_server::RunningServer) -> (aws_sdk_s3::Client, aws_sdk_bedrock::Client) {
    let c = server.credentials();
    let creds = Credentials::new(&c.access_key_id, &c.secret_access_key, None, None, "test");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(creds.clone())
            .force_path_style(true)
            .build(),
    );
    let bedrock = aws_sdk_bedrock::Client::from_conf(
        aws_sdk_bedrock::Config::builder()
            .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrock::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(creds)
            .build(),
    );
    (s3, bedrock)
}

fn settings(name: &str, wait: bool) -> bedrock_import::ImportSettings {
    bedrock_import::ImportSettings {
        name: name.into(),
        bucket: None,
        create_bucket: false,
        prefix: None,
        role_arn: None,
        quantize: None,
        in_place: false,
        upload: UploadSettings::default(),
        wait,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_imports_a_folder_in_one_call_and_again_without_resending() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = bedrock_server::start(bedrock_server::ServerConfig::new(data.path().to_path_buf()))
        .await
        .expect("local bedrock");
    let (s3, bedrock) = clients(&server);
    let state = tempfile::tempdir().expect("tempdir");
    let dirs = bedrock_import::StateDirs {
        staging: state.path().join("staging"),
        uploads: state.path().join("uploads"),
        pending: state.path().join("pending"),
        registry_file: state.path().join("models.json"),
    };
    let target = bedrock_import::Target {
        region: server.region().to_string(),
        endpoint_url: Some(server.endpoint_url().to_string()),
        local: true,
    };
    let model = tempfile::tempdir().expect("tempdir");
    tiny_model(model.path(), Family::Qwen2).expect("tiny model");

    let events = std::sync::Mutex::new(Vec::new());
    let record = |e: bedrock_import::Event| {
        let name = format!("{e:?}");
        events
            .lock()
            .unwrap()
            .push(name.split([' ', '{', '(']).next().unwrap_or_default().to_string());
    };
    let outcome = bedrock_import::import(
        model.path(),
        &settings("pipe", true),
        &target,
        &dirs,
        &s3,
        &bedrock,
        &record,
    )
    .await
    .expect("import");
    let bedrock_import::Outcome::Imported(first) = outcome else {
        panic!("not imported: {outcome:?}");
    };
    assert!(first.model_arn.contains(":imported-model/"), "{}", first.model_arn);
    assert_eq!(first.upload.bytes_sent, first.upload.bytes_total);
    let seen = events.lock().unwrap().clone();
    for step in ["Checked", "Planned", "Uploaded", "JobCreated", "Job", "Registered"] {
        assert!(seen.iter().any(|s| s == step), "no {step} event in {seen:?}");
    }
    let reg = model_registry::Registry::load(&dirs.registry_file).expect("registry");
    let entry = reg.find("pipe").expect("registered");
    assert_eq!(entry.base_id, first.model_arn);

    // The same import again: nothing is sent, and the same job (and so the same model) comes back.
    let again = bedrock_import::import(
        model.path(),
        &settings("pipe", true),
        &target,
        &dirs,
        &s3,
        &bedrock,
        &(),
    )
    .await
    .expect("import again");
    let bedrock_import::Outcome::Imported(second) = again else {
        panic!("not imported: {again:?}");
    };
    assert_eq!(
        (second.upload.bytes_sent, second.job_arn.as_str()),
        (0, first.job_arn.as_str())
    );

    // Without waiting: the job starts, the registration waits in `pending`, and a poll of the completed job does it.
    let started = bedrock_import::import(
        model.path(),
        &settings("later", false),
        &target,
        &dirs,
        &s3,
        &bedrock,
        &(),
    )
    .await
    .expect("import without waiting");
    let bedrock_import::Outcome::Started { job_arn, .. } = started else {
        panic!("not started: {started:?}");
    };
    let poll = PollSettings {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        factor: 2.0,
        timeout: Some(Duration::from_secs(120)),
    };
    let job = bedrock_import::wait_for_job(&bedrock, &job_arn, &poll, &())
        .await
        .expect("job completes");
    assert_eq!(
        bedrock_import::register_completed(&bedrock, &job, &dirs)
            .await
            .expect("register"),
        Some("later".to_string())
    );
    assert!(
        model_registry::Registry::load(&dirs.registry_file)
            .expect("registry")
            .find("later")
            .is_some()
    );
    assert_eq!(
        bedrock_import::register_completed(&bedrock, &job, &dirs)
            .await
            .expect("again"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_refuses_before_it_uploads() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = bedrock_server::start(bedrock_server::ServerConfig::new(data.path().to_path_buf()))
        .await
        .expect("local bedrock");
    let (s3, bedrock) = clients(&server);
    let state = tempfile::tempdir().expect("tempdir");
    let dirs = bedrock_import::StateDirs {
        staging: state.path().join("staging"),
        uploads: state.path().join("uploads"),
        pending: state.path().join("pending"),
        registry_file: state.path().join("models.json"),
    };
    let local = bedrock_import::Target {
        region: server.region().to_string(),
        endpoint_url: Some(server.endpoint_url().to_string()),
        local: true,
    };
    // A folder with errors (no weights): rejected with its report, and no bucket was even created.
    let broken = tempfile::tempdir().expect("tempdir");
    tiny_model(broken.path(), Family::Llama).expect("tiny model");
    std::fs::remove_file(broken.path().join("model.safetensors")).expect("remove weights");
    let outcome = bedrock_import::import(
        broken.path(),
        &settings("broken", true),
        &local,
        &dirs,
        &s3,
        &bedrock,
        &(),
    )
    .await
    .expect("import");
    let bedrock_import::Outcome::Rejected { report } = outcome else {
        panic!("not rejected: {outcome:?}");
    };
    assert!(report.has_errors());
    assert!(s3.list_buckets().send().await.expect("list").buckets().is_empty());

    // AWS needs a role and a bucket; a bad name is refused first. Each before any request.
    let aws = bedrock_import::Target {
        local: false,
        ..local.clone()
    };
    let model = tempfile::tempdir().expect("tempdir");
    tiny_model(model.path(), Family::Llama).expect("tiny model");
    let err = bedrock_import::import(model.path(), &settings("m", true), &aws, &dirs, &s3, &bedrock, &())
        .await
        .expect_err("no role");
    assert!(matches!(err, bedrock_import::Error::RoleArnRequired), "{err}");
    let with_role = bedrock_import::ImportSettings {
        role_arn: Some("arn:aws:iam::123456789012:role/Import".into()),
        ..settings("m", true)
    };
    let err = bedrock_import::import(model.path(), &with_role, &aws, &dirs, &s3, &bedrock, &())
        .await
        .expect_err("no bucket");
    assert!(matches!(err, bedrock_import::Error::BucketRequired), "{err}");
    let err = bedrock_import::import(
        model.path(),
        &settings("bad name!", true),
        &local,
        &dirs,
        &s3,
        &bedrock,
        &(),
    )
    .await
    .expect_err("bad name");
    assert!(err.to_string().contains("bad name!"), "{err}");
}
