//! Unit tests: name and ARN rules, tokens, part sizing, and the job state machine against aws-smithy-mocks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrock::Client;
use aws_sdk_bedrock::operation::create_model_import_job::CreateModelImportJobOutput;
use aws_sdk_bedrock::operation::get_model_import_job::{GetModelImportJobError, GetModelImportJobOutput};
use aws_sdk_bedrock::types::ModelImportJobStatus;
use aws_sdk_bedrock::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use crate::upload::{decode_crc, part_len, part_size_for};
use crate::*;

#[test]
fn role_arn_forms() {
    for ok in [
        "arn:aws:iam::123456789012:role/BedrockImport",
        "arn:aws:iam::123456789012:role/service-role/x",
        "arn:aws-cn:iam::123456789012:role/r",
        "arn:aws-us-gov:iam::123456789012:role/r",
        "arn:aws:iam:::role/r",
    ] {
        validate_role_arn(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "",
        "BedrockImport",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::12345678901:role/r",
        "arn:aws:iam::1234567890123:role/r",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:s3::123456789012:role/r",
        "arn:aws:iam:us-east-1:123456789012:role/r",
        "arn:azure:iam::123456789012:role/r",
    ] {
        let err = validate_role_arn(bad).expect_err(bad);
        assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
    }
}

#[test]
fn model_names() {
    for ok in ["tiny", "Tiny-Llama_3", "a", "x1-y2_z3"] {
        validate_model_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["", "-x", "a--b", "a_-b", "has space", "dot.ted", &"x".repeat(64)] {
        assert!(validate_model_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn job_names_and_tokens() {
    let name = job_name_for("my_model", "0123abcdef");
    assert_eq!(name, "my-model-0123abcd");
    assert!(name.len() <= 63);
    assert!(job_name_for(&"m".repeat(63), "ff").len() <= 63);
    let t1 = client_request_token("m", "s3://b/p/", "d1", 0);
    assert_eq!(
        t1,
        client_request_token("m", "s3://b/p/", "d1", 0),
        "stable across runs"
    );
    assert_ne!(
        t1,
        client_request_token("m", "s3://b/p/", "d2", 0),
        "content changes the token"
    );
    assert_ne!(
        t1,
        client_request_token("m", "s3://b/p/", "d1", 1),
        "a retry changes the token"
    );
    assert!(t1.len() <= 256 && t1.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
}

#[test]
fn part_sizes_respect_s3_limits() {
    let s = UploadSettings::default();
    assert_eq!(part_size_for(&s, 100), 32 << 20);
    // 1 TiB would need 32768 parts of 32 MiB: the part size grows so that 10000 suffice.
    let big = 1u64 << 40;
    let p = part_size_for(&s, big);
    assert!(big.div_ceil(p) <= 10_000, "{p}");
    let tiny = UploadSettings {
        part_size: 1,
        ..UploadSettings::default()
    };
    assert_eq!(part_size_for(&tiny, 100 << 20), 5 << 20, "never below 5 MiB");
    assert_eq!(part_len(12, 5, 1), 5);
    assert_eq!(part_len(12, 5, 3), 2);
}

#[test]
fn crc_encoding_round_trips() {
    // CRC32C("123456789") = 0xE3069283 (the standard check value).
    let crc = crc32c::crc32c(b"123456789");
    assert_eq!(crc, 0xE306_9283);
    let b64 = crc32c_base64(crc);
    assert_eq!(b64, "4waSgw==");
    assert_eq!(decode_crc(&b64), Some(crc));
    assert_eq!(decode_crc("not base64"), None);
}

fn job_output(status: ModelImportJobStatus, failure: Option<&str>) -> GetModelImportJobOutput {
    GetModelImportJobOutput::builder()
        .job_arn("arn:aws:bedrock:us-east-1:123456789012:model-import-job/abcdefghijkl")
        .status(status)
        .set_failure_message(failure.map(str::to_string))
        .imported_model_arn("arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl")
        .build()
}

fn fast_poll() -> PollSettings {
    PollSettings {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(2),
        factor: 2.0,
        timeout: None,
    }
}

#[tokio::test]
async fn create_job_sends_token_and_source() {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let create = mock!(Client::create_model_import_job)
        .match_requests(move |r| {
            *seen2.lock().expect("lock") = Some((
                r.job_name().map(str::to_string),
                r.client_request_token().map(str::to_string),
                r.role_arn().map(str::to_string),
                match r.model_data_source() {
                    Some(aws_sdk_bedrock::types::ModelDataSource::S3DataSource(s)) => Some(s.s3_uri().to_string()),
                    _ => None,
                },
            ));
            true
        })
        .then_output(|| {
            CreateModelImportJobOutput::builder()
                .job_arn("arn:job")
                .build()
                .expect("output")
        });
    let client = mock_client!(aws_sdk_bedrock, [&create]);
    let req = JobRequest {
        job_name: "tiny-0123abcd".into(),
        model_name: "tiny".into(),
        role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
        s3_uri: "s3://b/p/".into(),
        client_request_token: Some("cmi-abc".into()),
        model_tags: vec![],
    };
    assert_eq!(create_job(&client, &req).await.expect("create"), "arn:job");
    let seen = seen.lock().expect("lock").clone().expect("request seen");
    assert_eq!(seen.0.as_deref(), Some("tiny-0123abcd"));
    assert_eq!(seen.1.as_deref(), Some("cmi-abc"));
    assert_eq!(seen.2.as_deref(), Some("arn:aws:iam::123456789012:role/r"));
    assert_eq!(seen.3.as_deref(), Some("s3://b/p/"));
}

#[tokio::test]
async fn create_job_rejects_bad_role_before_calling() {
    let create = mock!(Client::create_model_import_job).then_output(|| {
        CreateModelImportJobOutput::builder()
            .job_arn("arn:job")
            .build()
            .expect("output")
    });
    let client = mock_client!(aws_sdk_bedrock, [&create]);
    let req = JobRequest {
        job_name: "j".into(),
        model_name: "m".into(),
        role_arn: Some("not-an-arn".into()),
        s3_uri: "s3://b/".into(),
        client_request_token: None,
        model_tags: vec![],
    };
    assert!(matches!(
        create_job(&client, &req).await,
        Err(Error::InvalidRoleArn { .. })
    ));
    assert_eq!(create.num_calls(), 0);
}

#[tokio::test]
async fn wait_polls_until_completed() {
    let in_progress = mock!(Client::get_model_import_job)
        .sequence()
        .output(|| job_output(ModelImportJobStatus::InProgress, None))
        .times(3)
        .output(|| job_output(ModelImportJobStatus::Completed, None))
        .build();
    let client = mock_client!(aws_sdk_bedrock, RuleMode::Sequential, [&in_progress]);
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let sink = statuses.clone();
    let progress = move |e: Event| {
        if let Event::Job { status, .. } = e {
            sink.lock().expect("lock").push(status);
        }
    };
    let info = wait_for_job(&client, "arn:job", &fast_poll(), &progress)
        .await
        .expect("completed");
    assert_eq!(info.status, JobStatus::Completed);
    assert!(
        info.model_arn
            .as_deref()
            .is_some_and(|a| a.contains(":imported-model/"))
    );
    assert_eq!(
        *statuses.lock().expect("lock"),
        vec!["InProgress", "InProgress", "InProgress", "Completed"]
    );
}

#[tokio::test]
async fn wait_reports_failure_message() {
    let failed = mock!(Client::get_model_import_job).then_output(|| {
        job_output(
            ModelImportJobStatus::Failed,
            Some("Amazon bedrock does not support the architecture (phi3)"),
        )
    });
    let client = mock_client!(aws_sdk_bedrock, [&failed]);
    let err = wait_for_job(&client, "arn:job", &fast_poll(), &())
        .await
        .expect_err("failed");
    match err {
        Error::JobFailed { job_arn, message } => {
            assert_eq!(job_arn, "arn:job");
            assert!(message.contains("phi3"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn wait_times_out() {
    let running =
        mock!(Client::get_model_import_job).then_output(|| job_output(ModelImportJobStatus::InProgress, None));
    let client = mock_client!(aws_sdk_bedrock, RuleMode::MatchAny, [&running]);
    let poll = PollSettings {
        timeout: Some(Duration::from_millis(20)),
        ..fast_poll()
    };
    let err = wait_for_job(&client, "arn:job", &poll, &()).await.expect_err("timeout");
    assert!(
        matches!(err, Error::JobTimeout { ref status, .. } if status == "InProgress"),
        "{err}"
    );
    assert!(running.num_calls() >= 2);
}

#[tokio::test]
async fn unknown_job_is_a_named_error() {
    let missing = mock!(Client::get_model_import_job).then_error(|| {
        GetModelImportJobError::ResourceNotFoundException(
            ResourceNotFoundException::builder().message("job not found").build(),
        )
    });
    let client = mock_client!(aws_sdk_bedrock, [&missing]);
    let err = get_job(&client, "nope").await.expect_err("missing");
    let msg = err.to_string();
    assert!(msg.contains("GetModelImportJob nope"), "{msg}");
    assert!(msg.contains("job not found"), "{msg}");
}

#[test]
fn staged_repair_leaves_the_source_alone() {
    use std::os::unix::fs::MetadataExt;
    let src = tempfile::tempdir().expect("tempdir");
    let mut opts = test_support::TinyOptions::new(test_support::Family::Llama);
    // A Llama 3 chat template without tool support (what the DeepSeek-R1 distills ship, simplified).
    opts.chat_template = Some(
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}".into(),
    );
    test_support::tiny_model_with(src.path(), &opts).expect("tiny");
    let report = model_folder::check(src.path()).expect("check");
    assert!(needs_repair(&report), "{:?}", report.findings);
    let before = std::fs::read(src.path().join("tokenizer_config.json")).expect("read");

    let staging = tempfile::tempdir().expect("tempdir");
    let stage = staging.path().join("stage");
    let repaired = repair(src.path(), &report.files, &stage, false).expect("repair");
    assert!(repaired.outcome.changed);
    assert!(!repaired.outcome.diff.is_empty());
    let name = repaired
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        name.starts_with("stage-") && repaired.dir.parent() == stage.parent(),
        "{}",
        repaired.dir.display()
    );
    // Again (as a second import of the same folder at the same time would): the same published copy, intact.
    let again = repair(src.path(), &report.files, &stage, false).expect("repair again");
    assert_eq!(again.dir, repaired.dir);
    let stage = repaired.dir.clone();
    assert_eq!(
        std::fs::read(src.path().join("tokenizer_config.json")).expect("read"),
        before,
        "source untouched"
    );
    let after = model_folder::check(&stage).expect("check staged");
    assert!(after.instruct_supported && after.converse_tools, "{:?}", after.findings);
    assert!(!needs_repair(&after));
    // Weights are hard links, not copies.
    let a = std::fs::metadata(src.path().join("model.safetensors")).expect("md");
    let b = std::fs::metadata(stage.join("model.safetensors")).expect("md");
    assert_eq!(a.ino(), b.ino());
    assert!(repaired.linked >= 1 && repaired.copied >= 1);
}

#[test]
fn working_template_needs_no_repair() {
    let src = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(src.path(), test_support::Family::Llama).expect("tiny");
    assert!(!needs_repair(&model_folder::check(src.path()).expect("check")));
    // Qwen3: Bedrock serves no Converse for it whatever the template, so there is nothing to repair.
    let q = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(q.path(), test_support::Family::Qwen3).expect("tiny");
    assert!(!needs_repair(&model_folder::check(q.path()).expect("check")));
}

#[test]
fn registration_writes_the_guide_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cfg").join("models.json");
    let r = Registration {
        name: "tiny-llama".into(),
        model_arn: "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl".into(),
        provider: provider_for(Some("llama")).into(),
        region: "us-east-1".into(),
        context_length: Some(131072),
        instruct_supported: true,
        tool_use: true,
        model_source: Some(dir.path().join("model")),
        architecture: Some("LlamaForCausalLM".into()),
    };
    register(&file, &r).expect("register");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    let e = &v["models"][0];
    assert_eq!(e["baseId"], r.model_arn.as_str());
    assert_eq!(e["name"], "tiny-llama");
    assert_eq!(e["provider"], "meta");
    assert_eq!(e["category"], "text");
    assert_eq!(e["toolUse"], true);
    assert_eq!(e["maxTokensLimit"], 8192);
    assert_eq!(e["supportsStreamingToolUse"], false);
    assert_eq!(e["availability"]["base"][0], "us-east-1");
    let reg = model_registry::Registry::load(&file).expect("load");
    assert!(reg.find("tiny-llama").is_some());
    // Registering again replaces, never duplicates.
    register(
        &file,
        &Registration {
            context_length: Some(512),
            ..r
        },
    )
    .expect("again");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(v["models"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["models"][0]["maxTokensLimit"], 256);
}
