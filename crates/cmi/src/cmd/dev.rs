//! `cmi dev`: developer tools — `cmi dev tiny-model DIR --family llama` writes a tiny, complete HF model folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use model_synth::{DType, Family, TinyOptions};

use crate::ctx::Ctx;

/// Arguments of `cmi dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DevCommand {
    /// Write a tiny model folder (seeded weights, byte-level BPE tokenizer, the family's real chat template).
    TinyModel(TinyModelArgs),
}

#[derive(Debug, clap::Args)]
struct TinyModelArgs {
    /// Output folder (created if missing).
    out_dir: PathBuf,
    /// Model family: llama, mistral, qwen2, qwen3, mixtral, qwen3-moe or gpt-oss.
    #[arg(long, default_value = "llama")]
    family: Family,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Storage type of the weights: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
    /// Write two shards and model.safetensors.index.json.
    #[arg(long)]
    sharded: bool,
    /// Make the end tokens unreachable for greedy decoding, so a generation runs to its max_tokens.
    #[arg(long)]
    endless: bool,
    /// GPT-OSS: write the experts as MXFP4 blocks and scales, as the published checkpoints do.
    #[arg(long)]
    mxfp4: bool,
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype `{other}`: expected f32, f16 or bf16")),
    }
}

pub(crate) async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    match args.command {
        DevCommand::TinyModel(a) => {
            let opts = TinyOptions {
                family: a.family,
                seed: a.seed,
                dtype: a.dtype,
                sharded: a.sharded,
                chat_template: None,
                endless: a.endless,
                mxfp4: a.mxfp4,
            };
            model_synth::tiny_model_with(&a.out_dir, &opts)
                .with_context(|| format!("writing the tiny {} model to {}", a.family, a.out_dir.display()))?;
            eprintln!("wrote a tiny {} model to {}", a.family, a.out_dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
