//! Unit tests: the guide's entry, validation with locations, ID classification, profiles, the registry file, export.

use std::path::Path;

use super::*;

/// The entry from the Japanese guide's `models.ts` step, pasted exactly as written (comment included).
const GUIDE_ENTRY: &str = r#"// カスタムモデルの例：DeepSeek-R1-Distill-Llama-8B
{
  baseId: 'arn:aws:bedrock:us-east-1:{{AWS_ACCOUNT_ID}}:imported-model/xxxxx',
  name: 'DeepSeek-R1-Distill-Llama-8B',
  provider: 'deepseek',
  category: 'text',
  toolUse: true,
  maxTokensLimit: 4096,
  supportsStreamingToolUse: false,
  availability: {
    base: ['us-east-1']
  }
}
"#;

fn parse(text: &str) -> Parsed {
    parse_entries(text, Some(Path::new("models.json5"))).expect("parses")
}

fn only_problem(p: &Parsed, severity: Severity) -> &Problem {
    let v: Vec<&Problem> = p.problems.0.iter().filter(|x| x.severity == severity).collect();
    assert_eq!(v.len(), 1, "expected exactly one {severity:?}, got {:#?}", p.problems);
    v[0]
}

#[test]
fn guide_entry_loads_as_written_and_explains_the_placeholders() {
    let p = parse(GUIDE_ENTRY);
    assert!(!p.has_errors(), "{}", p.problems);
    assert_eq!(p.entries.len(), 1);
    let e = &p.entries[0];
    assert_eq!(e.name, "DeepSeek-R1-Distill-Llama-8B");
    assert_eq!(e.max_tokens_limit, 4096);
    assert_eq!(e.supports_streaming_tool_use, Some(false));
    assert!(!e.streams_with_tools());
    assert_eq!(e.regions(), vec!["us-east-1".to_string()]);
    let w = only_problem(&p, Severity::Warning);
    assert_eq!(w.field, "baseId");
    assert_eq!(w.line, Some(3));
    assert!(
        w.message.contains("{{AWS_ACCOUNT_ID}}") && w.message.contains("xxxxx"),
        "{}",
        w.message
    );
    // The ARN itself is refused at call time, naming the part that is wrong.
    let err = classify(&e.base_id).unwrap_err().to_string();
    assert!(
        err.contains("account `{{AWS_ACCOUNT_ID}}` should be 12 digits"),
        "{err}"
    );
}

#[test]
fn guide_entry_copied_from_an_array_with_trailing_comma_loads() {
    let text = format!("[{},\n]", GUIDE_ENTRY.trim());
    assert_eq!(parse(&text).entries.len(), 1);
    let text = format!("{},", GUIDE_ENTRY.trim());
    assert_eq!(parse(&text).entries.len(), 1);
}

#[test]
fn catalogue_is_valid() {
    let p = parse_entries(catalogue::CATALOGUE, Some(Path::new("catalogue.json5"))).expect("catalogue parses");
    assert!(p.problems.0.is_empty(), "{}", p.problems);
    assert!(p.entries.len() >= 30, "{} entries", p.entries.len());
    for provider in ["anthropic", "amazon", "meta", "mistral", "deepseek", "openai", "qwen"] {
        assert!(p.entries.iter().any(|e| e.provider == provider), "no {provider} model");
    }
    // Every ID the catalogue produces classifies as a foundation model or a cross-region profile.
    for e in &p.entries {
        for prof in e.profiles() {
            let id = e.model_id_for_profile(&prof);
            match classify(&id).expect(&id) {
                ModelId::Foundation { .. } => assert_eq!(prof.kind, ProfileType::Base, "{id}"),
                ModelId::InferenceProfile { .. } => assert_ne!(prof.kind, ProfileType::Base, "{id}"),
                other => panic!("{id}: {other:?}"),
            }
        }
    }
}

fn entry_with(field_line: &str) -> String {
    format!(
        "[\n  {{\n    baseId: 'nova-micro-v1:0',\n    name: 'X',\n    provider: 'amazon',\n{field_line}\n    inferenceProfiles: [{{ type: 'base', regions: ['us-east-1'] }}],\n  }},\n]"
    )
}

#[test]
fn missing_field_is_reported_with_file_line_and_field() {
    // category present, toolUse missing.
    let p = parse(&entry_with("    category: 'text',\n    maxTokensLimit: 10,"));
    let e = only_problem(&p, Severity::Error);
    assert_eq!((e.field.as_str(), e.line), ("toolUse", Some(2)));
    assert_eq!(e.origin.as_deref(), Some("models.json5"));
    assert!(
        e.to_string()
            .starts_with("models.json5:2: error: model `X`, field `toolUse`: missing"),
        "{e}"
    );
}

#[test]
fn unknown_category_is_reported_on_its_line() {
    let p = parse(&entry_with(
        "    category: 'audio',\n    toolUse: true,\n    maxTokensLimit: 10,",
    ));
    let e = only_problem(&p, Severity::Error);
    assert_eq!((e.field.as_str(), e.line), ("category", Some(6)));
    assert!(e.message.contains("`audio`"), "{}", e.message);
}

#[test]
fn zero_max_tokens_is_reported_on_its_line() {
    let p = parse(&entry_with(
        "    category: 'text',\n    toolUse: true,\n    maxTokensLimit: 0,",
    ));
    let e = only_problem(&p, Severity::Error);
    assert_eq!((e.field.as_str(), e.line), ("maxTokensLimit", Some(8)));
}

#[test]
fn duplicate_name_is_reported_at_the_second_entry() {
    let one = "{ baseId: 'nova-micro-v1:0', name: 'Same', provider: 'amazon', category: 'text', toolUse: true, maxTokensLimit: 1, availability: { base: ['us-east-1'] } }";
    let text = format!("[\n{one},\n{},\n]", one.replace("Same", "same"));
    let p = parse(&text);
    let e = only_problem(&p, Severity::Error);
    assert_eq!((e.field.as_str(), e.line), ("name", Some(3)));
    assert!(e.message.contains("first defined on line 2"), "{}", e.message);
    assert_eq!(p.entries.len(), 1);
}

#[test]
fn region_not_served_is_an_error_with_a_hint() {
    let p = parse(
        &entry_with("    category: 'text',\n    toolUse: true,\n    maxTokensLimit: 5,")
            .replace("'us-east-1'", "'us-east-9'"),
    );
    let e = only_problem(&p, Severity::Error);
    assert_eq!(e.field, "inferenceProfiles[0].regions[0]");
    assert_eq!(e.line, Some(9));
    assert!(
        e.message.contains("`us-east-9` is not served by Bedrock") && e.message.contains("us-east-1"),
        "{}",
        e.message
    );
}

#[test]
fn arn_outside_its_listed_regions_is_an_error() {
    let text = "{ baseId: 'arn:aws:bedrock:us-west-2:123456789012:imported-model/abcdefghij12', name: 'M', provider: 'meta', category: 'text', toolUse: true, maxTokensLimit: 5, availability: { base: ['us-east-1'] } }";
    let p = parse(text);
    let e = only_problem(&p, Severity::Error);
    assert_eq!(e.field, "availability");
    assert!(
        e.message.contains("region not served") && e.message.contains("us-west-2"),
        "{}",
        e.message
    );
}

#[test]
fn unknown_fields_are_warned_about_and_kept() {
    let text = "{ baseId: 'nova-micro-v1:0', name: 'K', provider: 'amazon', category: 'text', toolUse: true,\n maxTokensLimit: 5, availability: { base: ['us-east-1'] },\n maxTokenLimit: 9, pricing: { input: 1 } }";
    let p = parse(text);
    let w = only_problem(&p, Severity::Warning);
    assert_eq!((w.field.as_str(), w.line), ("maxTokenLimit", Some(3)));
    let e = &p.entries[0];
    assert_eq!(e.extra.get("maxTokenLimit"), Some(&serde_json::json!(9)));
    assert!(
        e.extra.contains_key("pricing"),
        "known Bedrock Engineer fields are kept silently"
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let err = parse_entries("{\n  name: 'x',\n  toolUse: tru e\n}", Some(Path::new("f.json5"))).unwrap_err();
    let Error::Syntax { origin, line, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((origin.as_str(), *line), ("f.json5", 3));
}

#[test]
fn classify_every_form() {
    let cases: &[(&str, &str)] = &[
        ("anthropic.claude-3-haiku-20240307-v1:0", "foundation model"),
        ("meta.llama3-1-8b-instruct-v1:0", "foundation model"),
        (
            "us.anthropic.claude-3-haiku-20240307-v1:0",
            "cross-region inference profile (us)",
        ),
        ("eu.amazon.nova-lite-v1:0", "cross-region inference profile (eu)"),
        ("apac.amazon.nova-lite-v1:0", "cross-region inference profile (apac)"),
        (
            "jp.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "cross-region inference profile (jp)",
        ),
        (
            "au.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "cross-region inference profile (au)",
        ),
        (
            "us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "cross-region inference profile (us-gov)",
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "cross-region inference profile (global)",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456",
            "imported model",
        ),
        (
            "arn:aws-cn:bedrock:cn-north-1:123456789012:imported-model/abc123def456",
            "imported model",
        ),
        (
            "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:imported-model/abc123def456",
            "imported model",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:custom-model/amazon.titan-text-express-v1:0:8k/abc123def456",
            "custom model",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:custom-model-deployment/abc123def456",
            "custom model deployment",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123def456",
            "provisioned model",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1",
            "prompt router",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:prompt-router/abc123",
            "prompt router",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "application inference profile",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
            "inference profile (ARN)",
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "foundation model (ARN)",
        ),
        ("arn:aws:bedrock:us-east-1:123456789012:prompt/PROMPT1234:3", "prompt"),
        (
            "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-endpoint",
            "SageMaker endpoint",
        ),
        ("my-imported-model", "name"),
    ];
    for (id, want) in cases {
        let got = classify(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(got.describe(), *want, "{id}");
    }
    assert!(
        matches!(classify(cases[9].0), Ok(ModelId::ImportedModel(a)) if a.account == "123456789012" && a.region == "us-east-1")
    );
}

#[test]
fn malformed_arns_name_the_wrong_part() {
    let cases: &[(&str, &str)] = &[
        (
            "arn:aws:bedrock:us-east-1:imported-model/abc123def456",
            "6 `:`-separated parts",
        ),
        (
            "arn:azure:bedrock:us-east-1:123456789012:imported-model/abc123def456",
            "partition `azure`",
        ),
        (
            "arn:aws:s3:us-east-1:123456789012:imported-model/abc123def456",
            "service `s3`",
        ),
        (
            "arn:aws:bedrock:useast1:123456789012:imported-model/abc123def456",
            "region `useast1`",
        ),
        (
            "arn:aws:bedrock:cn-north-1:123456789012:imported-model/abc123def456",
            "belongs to partition `aws-cn`",
        ),
        (
            "arn:aws:bedrock:us-gov-west-1:123456789012:imported-model/abc123def456",
            "belongs to partition `aws-us-gov`",
        ),
        (
            "arn:aws:bedrock:us-east-1:1234:imported-model/abc123def456",
            "account `1234` should be 12 digits",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:imported-model/ABC",
            "imported-model ID `ABC`",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:model/abc123def456",
            "resource type `model`",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:foundation-model/anthropic.claude",
            "must be empty",
        ),
        ("Anthropic.Claude", "provider `Anthropic`"),
        ("us.claude", "after the `us.` profile prefix"),
        ("has spaces", "not an ARN"),
    ];
    for (id, want) in cases {
        let err = classify(id).expect_err(id).to_string();
        assert!(err.contains(want), "{id}: {err}");
    }
}

#[test]
fn profile_prefixing_follows_models_ts() {
    let reg = Registry::builtin_only(Path::new("/nonexistent/models.json"));
    let haiku = reg.find("Claude 3 Haiku").expect("catalogued");
    // Direct call preferred where the model is served on demand.
    assert_eq!(
        haiku.model_id_for_region("us-east-1").as_deref(),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    // Only through the US profile from us-east-2.
    assert_eq!(
        haiku.model_id_for_region("us-east-2").as_deref(),
        Some("us.anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(haiku.model_id_for_region("sa-east-1"), None);
    // Narrow geography before global.
    let sonnet = reg.find("Claude Sonnet 4.5").expect("catalogued");
    assert_eq!(
        sonnet.model_id_for_region("ap-northeast-3").as_deref(),
        Some("jp.anthropic.claude-sonnet-4-5-20250929-v1:0")
    );
    assert_eq!(
        sonnet.model_id_for_region("us-east-1").as_deref(),
        Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    );
    // Name with display suffix and full IDs resolve to the same entry and that profile.
    let r = reg
        .resolve("Claude Sonnet 4.5 (Global)", "us-east-1")
        .expect("resolves");
    assert_eq!(r.model_id, "global.anthropic.claude-sonnet-4-5-20250929-v1:0");
    let r = reg
        .resolve("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu-west-1")
        .expect("resolves");
    assert_eq!(r.entry.name, "Claude Sonnet 4.5");
    assert!(r.registered);
    // ARNs as-is, whatever the region.
    let arn = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456";
    let r = reg.resolve(arn, "eu-west-1").expect("resolves");
    assert_eq!((r.model_id.as_str(), r.registered), (arn, false));
    let err = reg.resolve("Claude 3 Haiku", "sa-east-1").unwrap_err().to_string();
    assert!(err.contains("not served in region sa-east-1"), "{err}");
    assert!(matches!(
        reg.resolve("No Such Model", "us-east-1"),
        Err(Error::UnknownModel { .. })
    ));
}

#[test]
fn registry_round_trip_is_atomic_and_keeps_unknown_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cfg").join("models.json");
    let mut reg = Registry::load(&file).expect("missing file = no user models");
    assert_eq!(reg.user_entries().count(), 0);
    let mut p = parse(GUIDE_ENTRY);
    let mut e = p.entries.remove(0);
    e.base_id = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456".into();
    e.extra.insert("note".into(), serde_json::json!("mine"));
    reg.upsert(e.clone()).expect("valid");
    reg.save().expect("saved");
    // No temporary files left beside it.
    let names: Vec<_> = std::fs::read_dir(file.parent().expect("has parent"))
        .expect("dir")
        .map(|d| d.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("models.json")]);
    let back = Registry::load(&file).expect("reloads");
    assert_eq!(back.find("deepseek-r1-distill-llama-8b"), Some(&e));
    assert_eq!(
        back.find(&e.base_id).map(|x| x.name.as_str()),
        Some("DeepSeek-R1-Distill-Llama-8B")
    );
    assert_eq!(back.warnings().len(), 1, "the unknown field is warned about on load");
    // Built-ins cannot be removed; user entries can; a user entry shadows a built-in.
    let mut reg = back;
    assert!(matches!(reg.remove("Claude 3 Haiku"), Err(Error::Builtin { .. })));
    let mut shadow = reg.find("Claude 3 Haiku").expect("builtin").clone();
    shadow.max_tokens_limit = 100;
    reg.upsert(shadow).expect("valid");
    assert_eq!(reg.find("claude 3 haiku").map(|e| e.max_tokens_limit), Some(100));
    assert_eq!(reg.entries().filter(|e| e.name == "Claude 3 Haiku").count(), 1);
    assert_eq!(
        reg.remove("DeepSeek-R1-Distill-Llama-8B")
            .map(|e| e.name)
            .ok()
            .as_deref(),
        Some("DeepSeek-R1-Distill-Llama-8B")
    );
    assert!(matches!(reg.remove("nothing"), Err(Error::NotFound { .. })));
}

#[test]
fn upsert_rejects_invalid_entries() {
    let mut reg = Registry::builtin_only(Path::new("/nonexistent/models.json"));
    let mut e = ModelEntry::new(
        "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456",
        "Z",
        "meta",
    );
    e.availability = Some(Availability {
        base: vec!["us-east-1".into()],
    });
    e.max_tokens_limit = 0;
    let err = reg.upsert(e).unwrap_err().to_string();
    assert!(err.contains("maxTokensLimit") && err.contains("at least 1"), "{err}");
}

#[test]
fn load_fails_on_invalid_user_file_with_all_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("models.json");
    std::fs::write(&file, entry_with("    category: 'tex',\n    maxTokensLimit: 0,")).expect("write");
    let err = Registry::load(&file).unwrap_err();
    let Error::Invalid(problems) = &err else {
        panic!("{err:?}")
    };
    let fields: Vec<&str> = problems.errors().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, vec!["category", "toolUse", "maxTokensLimit"]);
    assert!(err.to_string().contains(&format!("{}:6:", file.display())), "{err}");
}

#[test]
fn export_writes_inference_profiles_that_read_back() {
    let p = parse(GUIDE_ENTRY);
    let ts = export::bedrock_engineer(&p.entries[0]);
    assert!(
        ts.contains("inferenceProfiles: [") && !ts.contains("availability"),
        "{ts}"
    );
    assert!(ts.contains("supportsStreamingToolUse: false"), "{ts}");
    assert!(ts.contains("type: 'base'") && !ts.contains("prefix"), "{ts}");
    // The snippet is valid JSON5 too, and reads back to the same model.
    let back = parse(&ts);
    assert!(!back.has_errors(), "{}", back.problems);
    let b = &back.entries[0];
    assert_eq!(
        (b.base_id.as_str(), b.max_tokens_limit, b.supports_streaming_tool_use),
        (p.entries[0].base_id.as_str(), 4096, Some(false))
    );
    assert_eq!(b.profiles(), p.entries[0].profiles());
    // A provider outside models.ts's union is pointed out.
    let reg = Registry::builtin_only(Path::new("/x"));
    let ts = export::bedrock_engineer(reg.find("Llama 3.1 8B Instruct").expect("catalogued"));
    assert!(ts.contains("NOTE: provider 'meta'"), "{ts}");
    assert!(
        ts.contains("prefix: 'us'") && ts.contains("displaySuffix: '(US)'"),
        "{ts}"
    );
}
