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
