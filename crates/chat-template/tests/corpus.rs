//! Conformance: every case of the transformers 5.24 corpus (tests/corpus, copied from shared/chat-templates) renders
//! byte-identically, or fails as transformers did. All failures are reported at once.

use std::path::{Path, PathBuf};

use chat_template::{ChatTemplate, Error, RenderRequest};
use serde_json::{Value, json};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes a model folder the way a Hugging Face repo holds it: tokenizer_config.json with the special tokens and
/// (when the model has one) the chat template.
fn model_dir(root: &Path, name: &str) -> PathBuf {
    let meta = read_json(&corpus().join(format!("templates/{name}.json")));
    let mut cfg = serde_json::Map::new();
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    if let Some(tokens) = meta["special_tokens"].as_object() {
        for (k, v) in tokens {
            cfg.insert(k.clone(), v.clone());
        }
    }
    let jinja = corpus().join(format!("templates/{name}.jinja"));
    if jinja.is_file() {
        cfg.insert("chat_template".into(), json!(std::fs::read_to_string(&jinja).unwrap()));
    }
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn corpus_renders_byte_identical() {
    let manifest = read_json(&corpus().join("manifest.json"));
    let now = chrono::NaiveDateTime::parse_from_str(manifest["fixed_now"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")
        .expect("fixed_now");
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let cases = manifest["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 264, "the corpus should hold 264 cases");
    let (mut text_ok, mut err_ok) = (0, 0);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let tname = case["template"].as_str().unwrap();
        let conv = read_json(&corpus().join(format!("conversations/{}.json", case["conversation"].as_str().unwrap())));
        let mut req = RenderRequest::from_json(&conv).expect("request");
        req.now = Some(now);
        let dir = tmp.path().join(tname);
        let dir = if dir.is_dir() {
            dir
        } else {
            model_dir(tmp.path(), tname)
        };
        let rendered = ChatTemplate::from_model_dir(&dir).and_then(|t| t.render(&req));
        let expected_path = corpus().join(case["expected_file"].as_str().unwrap());
        match case["outcome"].as_str().unwrap() {
            "text" => {
                let want = std::fs::read(&expected_path).unwrap();
                match rendered {
                    Ok(got) if got.as_bytes() == want.as_slice() => text_ok += 1,
                    Ok(got) => {
                        let off = got
                            .bytes()
                            .zip(want.iter())
                            .position(|(a, b)| a != *b)
                            .unwrap_or(got.len().min(want.len()));
                        let lo = off.saturating_sub(40);
                        failures.push(format!(
                            "{id}: differs at byte {off} (got {} bytes, want {})\n   got:  {:?}\n   want: {:?}",
                            got.len(),
                            want.len(),
                            String::from_utf8_lossy(&got.as_bytes()[lo..(off + 40).min(got.len())]),
                            String::from_utf8_lossy(&want[lo..(off + 40).min(want.len())])
                        ));
                    }
                    Err(e) => failures.push(format!("{id}: expected text, got error: {e}")),
                }
            }
            "error" => {
                let want = std::fs::read_to_string(&expected_path).unwrap();
                let category = case["error_category"].as_str().unwrap_or("");
                match rendered {
                    Ok(_) => failures.push(format!("{id}: expected an error ({category}: {want}), got text")),
                    Err(Error::Raised { message }) if category == "raise_exception" => {
                        if message == want {
                            err_ok += 1;
                        } else {
                            failures.push(format!("{id}: raised {message:?}, want {want:?}"));
                        }
                    }
                    Err(e) if category == "raise_exception" => {
                        failures.push(format!("{id}: expected raise_exception({want:?}), got {e}"))
                    }
                    Err(_) => err_ok += 1,
                }
            }
            other => failures.push(format!("{id}: unknown outcome {other}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail ({text_ok} text ok, {err_ok} errors ok):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!((text_ok, err_ok), (192, 72));
}
