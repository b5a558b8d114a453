//! `cmi convert gguf FILE DIR` as a user runs it, on the demo model's GGUF: `--dtype f16` writes f16 safetensors and a
//! config that says so, beside the tokenizer files; an existing folder is kept unless `--force`; a file that is not a
//! GGUF and an unknown dtype are refused, naming them.

use std::path::Path;
use std::process::Stdio;

mod common;

use common::{cmi_command, convert_demo, shared_cache, text};

/// The dtype of every tensor in a safetensors file's header.
fn safetensors_dtypes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    header
        .as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| v["dtype"].as_str().expect("dtype").to_string())
        .collect()
}

#[test]
fn convert_gguf_writes_the_dtype_asked_for_and_refuses_bad_input() {
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    // Fetches the GGUF into the shared cache (once) and checks the default conversion works.
    convert_demo(home, &home.join("bf16"));
    let gguf = shared_cache().join("cmi/demo/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(gguf.is_file(), "{} is missing", gguf.display());
    let run = |args: &[&str]| {
        cmi_command(home, &home.join("cache"), args)
            .stdin(Stdio::null())
            .output()
            .expect("cmi runs")
    };
    let out_dir = home.join("f16");
    let (g, o) = (gguf.to_str().expect("utf-8"), out_dir.to_str().expect("utf-8"));
    let out = run(&["convert", "gguf", g, o, "--dtype", "f16"]);
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing\n{}", text(&out));
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("config.json")).expect("config")).expect("json");
    assert_eq!(config["torch_dtype"], "float16", "{config}");
    let dtypes = safetensors_dtypes(&out_dir.join("model.safetensors"));
    assert!(!dtypes.is_empty() && dtypes.iter().all(|d| d == "F16"), "{dtypes:?}");

    // The folder now exists: a second run keeps it unless --force.
    let out = run(&["convert", "gguf", g, o]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    assert_eq!(safetensors_dtypes(&out_dir.join("model.safetensors"))[0], "F16");

    // Not a GGUF, and an unknown dtype.
    let not_gguf = home.join("notes.gguf");
    std::fs::write(&not_gguf, b"hello, not a gguf").expect("write");
    let out = run(&[
        "convert",
        "gguf",
        not_gguf.to_str().expect("utf-8"),
        home.join("x").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("notes.gguf"),
        "{}",
        text(&out)
    );
    assert!(
        !home.join("x").join("model.safetensors").exists(),
        "a half-written folder was left"
    );
    let out = run(&[
        "convert",
        "gguf",
        g,
        home.join("y").to_str().expect("utf-8"),
        "--dtype",
        "int3",
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("int3"), "{}", text(&out));
}
