//! `cmi models sync` against a `cmi serve`, with the real AWS SDK calls (ListImportedModels, GetImportedModel): a
//! model imported into the local Bedrock but missing from the registry is added with its ARN, Converse capability,
//! architecture and S3 source; `--dry-run` writes nothing; a second sync changes nothing; what the user set on an
//! entry survives a sync.

use std::path::Path;
use std::process::Output;

mod common;

use common::{cmi_command, start_serve, text};

fn cmi(home: &Path, args: &[&str]) -> Output {
    cmi_command(home, &home.join("cache"), args).output().expect("cmi runs")
}

fn registry(home: &Path) -> serde_json::Value {
    let file = home.join("config/cmi/models.json");
    let raw = std::fs::read_to_string(&file).expect("registry written");
    serde_json::from_str(&raw).expect("registry is JSON")
}

/// The user models of the registry file, as an array (the file is `{ "models": [...] }` or a bare array).
fn entries(home: &Path) -> Vec<serde_json::Value> {
    let v = registry(home);
    v.get("models").unwrap_or(&v).as_array().cloned().unwrap_or_default()
}

#[test]
fn sync_adds_imported_models_keeps_user_fields_and_is_idempotent() {
    let home = tempfile::tempdir().expect("home");
    let _serve = start_serve(
        cmi_command(home.path(), &home.path().join("cache"), &["serve", "--port", "0"]),
        std::process::Stdio::null(),
        &home.path().join("data/cmi/server/endpoint.json"),
    );

    // Two models imported (and registered by the import), then forgotten by the registry.
    let mut arns = Vec::new();
    for (name, family) in [
        ("tiny-llama", test_support::Family::Llama),
        ("tiny-qwen3", test_support::Family::Qwen3),
    ] {
        let dir = home.path().join(name);
        test_support::tiny_model(&dir, family).expect("tiny model");
        let out = cmi(
            home.path(),
            &["import", dir.to_str().expect("utf-8"), "--name", name, "--json"],
        );
        assert!(out.status.success(), "import {name}\n{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json");
        let arn = v["modelArn"].as_str().expect("modelArn").to_string();
        assert!(arn.contains(":imported-model/"), "{arn}");
        arns.push(arn);
        let rm = cmi(home.path(), &["models", "remove", name]);
        assert!(rm.status.success(), "remove {name}\n{}", text(&rm));
    }
    assert!(entries(home.path()).is_empty(), "{:?}", registry(home.path()));

    // A dry run reports both additions and writes nothing.
    let dry = cmi(home.path(), &["models", "sync", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let err = String::from_utf8_lossy(&dry.stderr);
    assert!(
        err.contains("add `tiny-llama`") && err.contains("add `tiny-qwen3`"),
        "{}",
        text(&dry)
    );
    assert!(err.contains("dry run: 2 change(s) not written"), "{}", text(&dry));
    assert!(
        entries(home.path()).is_empty(),
        "dry run wrote {:?}",
        registry(home.path())
    );

    let out = cmi(home.path(), &["models", "sync"]);
    assert!(out.status.success(), "{}", text(&out));
    let got = entries(home.path());
    assert_eq!(got.len(), 2, "{got:?}");
    for (arn, name) in arns.iter().zip(["tiny-llama", "tiny-qwen3"]) {
        let e = got
            .iter()
            .find(|e| e["baseId"] == arn.as_str())
            .unwrap_or_else(|| panic!("{arn} not in {got:?}"));
        assert_eq!(e["name"], name, "{e}");
        assert_eq!(
            e["supportsStreamingToolUse"], false,
            "imported models start without streaming tool use: {e}"
        );
        let source = e["modelSource"].as_str().unwrap_or_default();
        assert!(source.starts_with("s3://"), "S3 source recorded: {e}");
        assert!(e["architecture"].is_string(), "architecture recorded: {e}");
    }
    // The local Bedrock serves the Llama template through Converse; what it reports is what the entry says.
    let llama = got.iter().find(|e| e["name"] == "tiny-llama").expect("llama entry");
    assert_eq!(llama["instructSupported"], true, "{llama}");

    // A second sync changes nothing.
    let again = cmi(home.path(), &["models", "sync"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("registry up to date (local Bedrock)"),
        "{}",
        text(&again)
    );

    // What the user set survives: a lower token limit on one entry.
    let mut edited = llama.clone();
    edited["maxTokensLimit"] = serde_json::json!(123);
    let file = home.path().join("edited.json");
    std::fs::write(&file, serde_json::to_vec(&edited).expect("json")).expect("write");
    let add = cmi(home.path(), &["models", "add", file.to_str().expect("utf-8")]);
    assert!(add.status.success(), "{}", text(&add));
    let after = cmi(home.path(), &["models", "sync"]);
    assert!(after.status.success(), "{}", text(&after));
    let kept = entries(home.path());
    let llama = kept.iter().find(|e| e["name"] == "tiny-llama").expect("llama entry");
    assert_eq!(llama["maxTokensLimit"], 123, "user field kept: {llama}");
    assert_eq!(kept.len(), 2, "{kept:?}");
}
