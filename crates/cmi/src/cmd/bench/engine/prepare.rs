//! What `cmi bench engine` measures on, made once and kept in the cache dir: the demo model, a generated model of a
//! named real shape (`--shape llama-3.1-8b`) with the same random weights as GGUF files for llama.cpp, and the token
//! ids every contender is given.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use model_synth::Shape;
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;

/// The demo model's folder and GGUF (converted on first use, as `cmi quickstart` does).
pub(super) async fn demo(ctx: &Ctx) -> Result<(PathBuf, PathBuf)> {
    let cache_dir = ctx.paths.cache_dir.clone();
    let gguf = tokio::task::spawn_blocking(move || model_convert::demo::ensure_demo_gguf(&cache_dir))
        .await?
        .context("getting the demo model")?;
    let folder = ctx.paths.cache_dir.join("demo").join("SmolLM2-135M-Instruct");
    crate::cmd::quickstart::convert_once(&gguf, &folder).await?;
    Ok((folder, gguf))
}

/// Where the generated folders and GGUF files of the shapes live.
fn shapes_dir(ctx: &Ctx) -> PathBuf {
    ctx.paths.cache_dir.join("bench-models")
}

/// The folder of `shape` (bf16, the demo model's tokenizer), written on first use: into a `.partial` sibling that is
/// renamed when complete, so an interrupted write is started again, never used.
pub(super) async fn shape_folder(ctx: &Ctx, shape: Shape, tokenizer_from: &Path) -> Result<PathBuf> {
    let dir = shapes_dir(ctx).join(shape.name);
    if dir.join("model.safetensors.index.json").is_file() {
        return Ok(dir);
    }
    // Not `with_extension`: a shape's name has dots (`llama-3.2-1b`).
    let partial = shapes_dir(ctx).join(format!("{}.partial", shape.name));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let (p, from) = (partial.clone(), tokenizer_from.to_path_buf());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} writing {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("a valid template"),
    );
    bar.set_message(format!("{} ({})", shape.name, shape.about));
    let b = bar.clone();
    tokio::task::spawn_blocking(move || {
        model_synth::write_shape(&p, &shape, &from, 0x5eed, |done, total| {
            b.set_length(total);
            b.set_position(done);
        })
    })
    .await?
    .with_context(|| format!("writing the {} folder in {}", shape.name, partial.display()))?;
    bar.finish_and_clear();
    std::fs::rename(&partial, &dir).with_context(|| format!("renaming {} into place", partial.display()))?;
    Ok(dir)
}

/// The GGUF files of `folder` for llama.cpp, one per llama.cpp type (`Q4_K_M`, `Q4_0`, `Q8_0`, `BF16`), written by
/// `to_gguf.py` (gguf-py and llama.cpp's own quantiser) unless already there.
pub(super) fn shape_ggufs(
    ctx: &Ctx,
    folder: &Path,
    tokenizer_gguf: &Path,
    types: &[String],
    threads: usize,
) -> Result<Vec<PathBuf>> {
    const KNOWN: [&str; 4] = ["Q4_K_M", "Q4_0", "Q8_0", "BF16"];
    if let Some(bad) = types.iter().find(|t| !KNOWN.contains(&t.as_str())) {
        bail!(
            "--gguf-types: unknown llama.cpp type `{bad}` (expected some of {})",
            KNOWN.join(", ")
        );
    }
    let name = folder_name(folder);
    let prefix = shapes_dir(ctx).join(&name);
    let path = |t: &String| PathBuf::from(format!("{}-{t}.gguf", prefix.display()));
    let wanted: Vec<PathBuf> = types.iter().map(path).collect();
    if wanted.iter().all(|p| p.is_file()) {
        return Ok(wanted);
    }
    let python = super::llamacpp_venv(ctx)?;
    let script = std::env::temp_dir().join(format!("cmi-bench-to-gguf-{}.py", std::process::id()));
    std::fs::write(&script, include_str!("to_gguf.py"))?;
    eprintln!(
        "writing {name}'s weights as GGUF for llama.cpp ({}; gguf-py, then llama.cpp's quantiser; once)...",
        types.join(", ")
    );
    let status = Command::new(python)
        .arg(&script)
        .arg(folder)
        .arg(tokenizer_gguf)
        .arg(&prefix)
        .arg(threads.to_string())
        .arg(types.join(","))
        .status()
        .context("running the GGUF writer")?;
    let _ = std::fs::remove_file(&script);
    if !status.success() {
        bail!("writing the GGUF files of {} failed ({status})", folder.display());
    }
    Ok(wanted)
}

/// Where this engine's quantised-weights cache of `folder` in `kind` is kept for the bench (as `cmi serve` keeps
/// one beside each imported model): written by the first load, mapped by every later one.
pub(super) fn quantised_cache(ctx: &Ctx, folder: &Path, kind: &str) -> PathBuf {
    shapes_dir(ctx)
        .join("quantised")
        .join(format!("{}-{kind}.bin", folder_name(folder)))
}

/// The last component of a model folder's path: what the files made from it are named after.
fn folder_name(folder: &Path) -> String {
    folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The token ids every contender is given, made once by the bench with the model's tokenizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Prompts {
    /// A short chat prompt: time to first token, decode.
    pub(super) chat: Vec<u32>,
    /// The prompt of the prefill figure (`--prefill-tokens`; the chat prompt when 0).
    pub(super) prefill: Vec<u32>,
    /// The first turn of the second-turn figure: a long history.
    pub(super) history: Vec<u32>,
    /// What the second turn adds to the history: a short new question.
    pub(super) question: Vec<u32>,
    /// One prompt per concurrent stream.
    pub(super) streams: Vec<Vec<u32>>,
}

pub(super) const PROMPT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
Face<|im_end|>\n<|im_start|>user\nWrite a long story about a dragon who learns to cook.<|im_end|>\n<|im_start|>assistant\n";

const TURN: &str = "<|im_start|>user\nTell me more about the dragon's kitchen.<|im_end|>\n<|im_start|>assistant\nThe \
dragon lit the oven with one careful breath, weighed the flour on a scale made from an old shield, and hummed while the \
bread rose.<|im_end|>\n";

const QUESTION: &str =
    "<|im_end|>\n<|im_start|>user\nAnd what did the dragon cook next?<|im_end|>\n<|im_start|>assistant\n";

impl Prompts {
    /// The prompts for a model whose tokenizer is `folder/tokenizer.json`, within a context of `context` tokens.
    pub(super) fn new(
        folder: &Path,
        prefill_tokens: usize,
        history_tokens: usize,
        streams: usize,
        context: usize,
    ) -> Result<Prompts> {
        let path = folder.join("tokenizer.json");
        let tok =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
        let encode = |text: &str| -> Result<Vec<u32>> {
            Ok(tok.encode(text, false).map_err(anyhow::Error::msg)?.get_ids().to_vec())
        };
        let chat = encode(PROMPT)?;
        let question = encode(QUESTION)?;
        let long = |n: usize| -> Result<Vec<u32>> {
            let mut ids = chat.clone();
            let turn = encode(TURN)?;
            while ids.len() < n {
                ids.extend(&turn);
            }
            ids.truncate(n);
            Ok(ids)
        };
        let room = context.saturating_sub(question.len() + 8);
        if history_tokens > room {
            bail!(
                "--history-tokens {history_tokens}: the model's context is {context} tokens; expected at most {room}"
            );
        }
        let prefill = if prefill_tokens == 0 {
            chat.clone()
        } else {
            long(prefill_tokens.min(room))?
        };
        let streams = (0..streams)
            .map(|i| encode(&PROMPT.replace("a dragon", &format!("dragon number {i}"))))
            .collect::<Result<_>>()?;
        Ok(Prompts {
            history: long(history_tokens)?,
            chat,
            prefill,
            question,
            streams,
        })
    }

    pub(super) fn read(path: &Path) -> Result<Prompts> {
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))
    }
}
