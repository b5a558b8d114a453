//! `cmi bench upload`: uploads the same model folder (1 GiB by default) to the same local S3 with cmi's uploader and
//! with `aws s3 sync` (AWS CLI from PyPI, installed into a venv by the bench), prints both throughputs and the ratio;
//! then measures the resume path (an upload killed half-way, then run again: bytes sent ÷ bytes the store did not hold
//! yet, aim 1.0); then times `cmi import check` (model_folder::check) on a 16 GB folder of valid, sparse safetensors
//! files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aws_credential_types::provider::ProvideCredentials as _;
use bedrock_import::{UploadPlan, UploadSettings, Uploader};
use serde_json::{Value, json};

use crate::ctx::Ctx;

const MIB: u64 = 1024 * 1024;

/// Arguments of `cmi bench upload`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the model folder to upload, in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Time the preflight on a 16 GB folder of sparse safetensors (Llama-3-8B shapes, bf16); `--check false` skips it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    check: bool,
    /// Rounds of one cmi upload and one `aws s3 sync`, interleaved; the figures are the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the AWS CLI run (cmi only).
    #[arg(long)]
    no_peer: bool,
    /// Measure the resume path: an upload killed half-way, then run again; `--resume false` skips it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    resume: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let root = ctx.paths.cache_dir.join("bench-upload");
    let folder = root.join(format!("model-{}m", args.size_mib));
    let size = args.size_mib * MIB;
    {
        let f = folder.clone();
        tokio::task::spawn_blocking(move || make_upload_folder(&f, size)).await??;
    }
    let total: u64 = std::fs::read_dir(&folder)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let target = ctx.aws().await?;
    if !target.local {
        bail!(
            "cmi bench upload runs against the local Bedrock only\n\nhint: unset AWS credentials or pass --endpoint-url of a local Bedrock"
        );
    }
    let endpoint = target
        .endpoint_url
        .clone()
        .context("the local Bedrock has no endpoint URL")?;
    let creds = target
        .sdk
        .credentials_provider()
        .context("no credentials for the local Bedrock")?
        .provide_credentials()
        .await?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&target.sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = "cmi-bench-upload";
    bedrock_import::ensure_bucket(&s3, bucket, &target.region, true).await?;
    let names: Vec<String> = model_folder::import_files(&folder)?;
    let aws = if args.no_peer {
        None
    } else {
        Some(ensure_awscli(&ctx.paths.cache_dir)?)
    };

    // Rounds of one cmi upload then one `aws s3 sync`, each to a fresh prefix (so nothing is skipped) that is deleted
    // afterwards; before every timed run the page cache's dirty data is written out (`sync`), so neither run pays
    // for the other's writeback.
    let mut cmi_runs = Vec::new();
    let mut aws_runs = Vec::new();
    for round in 0..args.rounds.max(1) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();

        // cmi with a fresh resume journal, as `cmi import` keeps one: every byte is checksummed and sent, and every
        // part is recorded.
        let prefix = format!("cmi-{stamp}");
        let plan = UploadPlan::new(&folder, &names, bucket, &prefix);
        let journal = root.join(format!("journal-{stamp}.json"));
        let settings = UploadSettings {
            journal: Some(journal.clone()),
            ..UploadSettings::default()
        };
        flush_disks().await?;
        let t = Instant::now();
        let summary = Uploader::new(s3.clone(), settings).upload(&plan, &()).await;
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&journal);
        let summary = summary?;
        if summary.bytes_sent != total {
            bail!("cmi sent {} of {total} bytes", summary.bytes_sent);
        }
        delete_prefix(&s3, bucket, &prefix).await?;
        eprintln!(
            "round {}: cmi          {:>8.1} MiB/s  ({:.2} s for {} MiB)",
            round + 1,
            mib(total) / secs,
            secs,
            total / MIB
        );
        cmi_runs.push(secs);

        let Some(aws) = &aws else { continue };
        let prefix = format!("aws-{stamp}");
        let dest = format!("s3://{bucket}/{prefix}/");
        flush_disks().await?;
        let t = Instant::now();
        let status = tokio::process::Command::new(aws)
            .args(["s3", "sync"])
            .arg(&folder)
            .arg(&dest)
            .args([
                "--endpoint-url",
                &endpoint,
                "--region",
                &target.region,
                "--only-show-errors",
            ])
            .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .status()
            .await
            .with_context(|| format!("running {}", aws.display()))?;
        let secs = t.elapsed().as_secs_f64();
        if !status.success() {
            bail!("aws s3 sync failed ({status})");
        }
        let sent = delete_prefix(&s3, bucket, &prefix).await?;
        if sent != total {
            bail!("aws s3 sync stored {sent} of {total} bytes");
        }
        eprintln!(
            "round {}: aws s3 sync  {:>8.1} MiB/s  ({:.2} s)",
            round + 1,
            mib(total) / secs,
            secs
        );
        aws_runs.push(secs);
    }
    let (cmi_secs, cmi_mibs) = report("cmi", &cmi_runs, total);
    let mut peer = None;
    if !aws_runs.is_empty() {
        let (secs, mibs) = report("aws s3 sync", &aws_runs, total);
        eprintln!(
            "ratio:          {:>8.2}x (medians; best against best {:.2}x)",
            cmi_mibs / mibs,
            best(&aws_runs) / best(&cmi_runs)
        );
        peer = Some((secs, mibs));
    }

    let resume = if args.resume {
        Some(resume_figure(&s3, bucket, &folder, &names, &root, total).await?)
    } else {
        None
    };

    let mut check = None;
    if args.check {
        let dir = root.join("sparse-llama3-8b-bf16");
        let d = dir.clone();
        tokio::task::spawn_blocking(move || make_sparse_folder(&d)).await??;
        let d = dir.clone();
        let (times, report) = tokio::task::spawn_blocking(move || -> Result<(Vec<Duration>, model_folder::Report)> {
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..7 {
                let t = Instant::now();
                let r = model_folder::check(&d)?;
                times.push(t.elapsed());
                last = Some(r);
            }
            // Seven iterations ran, so there is a report.
            Ok((times, last.expect("seven runs")))
        })
        .await??;
        let mut sorted = times.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        eprintln!(
            "import check:   {:>8.1} ms median, {:.1} ms first, on {:.1} GB ({} tensors, {} errors)",
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            report.weight_bytes as f64 / 1e9,
            report.tensor_count,
            report.errors().count()
        );
        if report.has_errors() {
            bail!(
                "the sparse folder should check clean: {:?}",
                report.errors().collect::<Vec<_>>()
            );
        }
        check = Some((median, times[0], report.weight_bytes, report.tensor_count));
    }

    if args.json {
        let out = json!({
            "bytes": total,
            "rounds": {"cmi": cmi_runs, "awsCli": aws_runs},
            "cmi": {"seconds": cmi_secs, "mibPerSecond": cmi_mibs},
            "awsCli": peer.map(|(s, m)| json!({"seconds": s, "mibPerSecond": m})),
            "ratio": peer.map(|(_, m)| cmi_mibs / m),
            "resume": resume.map(|r| json!({"bytesSent": r.sent, "bytesUnacknowledged": r.unacknowledged,
                "bytesHeldAtKill": r.held, "ratio": r.ratio()})),
            "check": check.map(|(med, first, bytes, tensors)| json!({
                "medianMs": med.as_secs_f64() * 1e3, "firstMs": first.as_secs_f64() * 1e3,
                "weightBytes": bytes, "tensors": tensors})),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the store holds of the plan: whole objects (HeadObject) and the parts of the uploads in the journal
/// (ListParts).
async fn held_bytes(s3: &aws_sdk_s3::Client, bucket: &str, plan: &UploadPlan, journal: &Path) -> Result<u64> {
    let mut held = 0;
    for f in &plan.files {
        if let Ok(h) = s3.head_object().bucket(bucket).key(&f.key).send().await {
            held += h.content_length().unwrap_or(0) as u64;
        }
    }
    let j: Value = serde_json::from_slice(&std::fs::read(journal).context("reading the upload journal")?)?;
    for (dest, u) in j["uploads"].as_object().into_iter().flatten() {
        let (Some(key), Some(id)) = (dest.strip_prefix(&format!("{bucket}/")), u["upload_id"].as_str()) else {
            continue;
        };
        // An upload completed just before the kill is gone (its object was counted above).
        if let Ok(parts) = s3.list_parts().bucket(bucket).key(key).upload_id(id).send().await {
            held += parts.parts().iter().map(|p| p.size().unwrap_or(0) as u64).sum::<u64>();
        }
    }
    Ok(held)
}

/// What the resumed upload sent against what it had to.
struct Resume {
    /// Bytes the store held (whole objects, acknowledged parts) when the first run was killed.
    held: u64,
    /// Bytes it did not hold yet.
    unacknowledged: u64,
    /// Bytes the resumed run sent.
    sent: u64,
}

impl Resume {
    fn ratio(&self) -> f64 {
        self.sent as f64 / self.unacknowledged.max(1) as f64
    }
}

/// Uploads the folder with a journal, kills the upload (drops its task) once half the bytes are acknowledged, asks
/// the store what it holds (HeadObject, and ListParts of the uploads in the journal), and runs the upload again.
async fn resume_figure(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    folder: &Path,
    names: &[String],
    root: &Path,
    total: u64,
) -> Result<Resume> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let prefix = format!("resume-{stamp}");
    let plan = UploadPlan::new(folder, names, bucket, &prefix);
    let journal = root.join(format!("journal-resume-{stamp}.json"));
    let settings = UploadSettings {
        journal: Some(journal.clone()),
        ..UploadSettings::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let first = {
        let (uploader, plan) = (Uploader::new(s3.clone(), settings.clone()), plan.clone());
        tokio::spawn(async move {
            let progress = move |e: bedrock_import::Event| {
                if let bedrock_import::Event::Sent { bytes, .. } = e {
                    let _ = tx.send(bytes);
                }
            };
            uploader.upload(&plan, &progress).await
        })
    };
    let mut acked = 0;
    while acked < total / 2 {
        match rx.recv().await {
            Some(b) => acked += b,
            None => bail!("the first upload ended before half of it was sent"),
        }
    }
    first.abort();
    let _ = first.await;
    // Requests the store had begun finish on its side (they run detached from the connection): ask until what it
    // holds stops changing.
    let mut held = held_bytes(s3, bucket, &plan, &journal).await?;
    let mut still = 0;
    while still < 3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = held_bytes(s3, bucket, &plan, &journal).await?;
        still = if now == held { still + 1 } else { 0 };
        held = now;
    }
    let summary = Uploader::new(s3.clone(), settings).upload(&plan, &()).await;
    let _ = std::fs::remove_file(&journal);
    let summary = summary?;
    delete_prefix(s3, bucket, &prefix).await?;
    let r = Resume {
        held,
        unacknowledged: total - held.min(total),
        sent: summary.bytes_sent,
    };
    eprintln!(
        "resume:         {:>8.3}  bytes sent ÷ bytes not yet acknowledged ({} ÷ {}; killed at {} of {} MiB held; aim 1.0)",
        r.ratio(),
        r.sent,
        r.unacknowledged,
        held / MIB,
        total / MIB
    );
    Ok(r)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn best(secs: &[f64]) -> f64 {
    secs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Prints one contender's median and best throughput; returns the median run's seconds and MiB/s.
fn report(name: &str, runs: &[f64], bytes: u64) -> (f64, f64) {
    let secs = super::median(runs);
    let mibs = mib(bytes) / secs;
    eprintln!(
        "{:<15} {:>8.1} MiB/s median of {} ({:.1} best)",
        format!("{name}:"),
        mibs,
        runs.len(),
        mib(bytes) / best(runs)
    );
    (secs, mibs)
}

/// Writes out every dirty page of the machine (`sync(1)`), so that a timed run starts with no writeback pending.
async fn flush_disks() -> Result<()> {
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("running sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Deletes every object under `prefix/`; returns their total size.
async fn delete_prefix(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<u64> {
    let mut bytes = 0;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}/"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page?.contents() {
            bytes += o.size().unwrap_or(0) as u64;
            if let Some(key) = o.key() {
                s3.delete_object().bucket(bucket).key(key).send().await?;
            }
        }
    }
    Ok(bytes)
}

/// The AWS CLI from PyPI in `cache/venv-awscli`, installed on first use.
fn ensure_awscli(cache_dir: &Path) -> Result<PathBuf> {
    let venv = cache_dir.join("venv-awscli");
    super::ensure_venv(&venv, "awscli", &["awscli"], "")?;
    Ok(venv.join("bin").join("aws"))
}

/// A tiny Llama folder plus noise weight files (256 MiB each) up to `size` bytes; reused when already there.
///
/// The marker of a finished folder lies beside it, not in it: `aws s3 sync` would upload a zero-byte file in the
/// folder with `Expect: 100-continue`, which poisons botocore's pooled connection so that the next PUT on it stalls
/// for the 60 s read timeout (boto/botocore#3755) — a client bug, not upload speed.
fn make_upload_folder(dir: &Path, size: u64) -> Result<()> {
    let marker = dir.with_extension("complete");
    if marker.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    model_synth::tiny_model(dir, model_synth::Family::Llama)?;
    let mut have: u64 = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut i = 0;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while have < size {
        let len = (size - have).min(256 * MIB) as usize;
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(len);
        std::fs::write(dir.join(format!("noise-{i:05}.safetensors")), &buf)?;
        have += len as u64;
        i += 1;
    }
    std::fs::write(marker, b"")?;
    Ok(())
}

/// Llama-3-8B shapes in bf16 (≈16 GB) as four sparse shards with real headers and an index; config and tokenizer
/// files from the tiny generator. Only headers are written, so it takes no disk space and milliseconds to make.
fn make_sparse_folder(dir: &Path) -> Result<()> {
    if dir.join(".complete").exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    model_synth::tiny_model(dir, model_synth::Family::Llama)?;
    std::fs::remove_file(dir.join("model.safetensors"))?;
    let (hidden, inter, layers, heads, kv, vocab) = (4096usize, 14336usize, 32usize, 32usize, 8usize, 128256usize);
    let hd = hidden / heads;
    let mut config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    for (k, v) in [
        ("hidden_size", hidden),
        ("intermediate_size", inter),
        ("num_hidden_layers", layers),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv),
        ("head_dim", hd),
        ("vocab_size", vocab),
        ("max_position_embeddings", 8192),
    ] {
        config[k] = json!(v);
    }
    config["tie_word_embeddings"] = json!(false);
    config["torch_dtype"] = json!("bfloat16");
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;

    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
        ("lm_head.weight".into(), vec![vocab, hidden]),
    ];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        tensors.extend([
            (format!("{p}.input_layernorm.weight"), vec![hidden]),
            (format!("{p}.post_attention_layernorm.weight"), vec![hidden]),
            (format!("{p}.self_attn.q_proj.weight"), vec![heads * hd, hidden]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv * hd, hidden]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv * hd, hidden]),
            (format!("{p}.self_attn.o_proj.weight"), vec![hidden, heads * hd]),
            (format!("{p}.mlp.gate_proj.weight"), vec![inter, hidden]),
            (format!("{p}.mlp.up_proj.weight"), vec![inter, hidden]),
            (format!("{p}.mlp.down_proj.weight"), vec![hidden, inter]),
        ]);
    }
    let bytes = |shape: &[usize]| shape.iter().product::<usize>() * 2;
    let total: usize = tensors.iter().map(|(_, s)| bytes(s)).sum();
    let shards = 4;
    let per = total.div_ceil(shards);
    let mut groups: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut acc = 0;
    for t in tensors {
        if acc >= per && groups.len() < shards {
            groups.push(Vec::new());
            acc = 0;
        }
        acc += bytes(&t.1);
        // `groups` starts with one element and only grows.
        groups.last_mut().expect("non-empty").push(t);
    }
    let n = groups.len();
    let mut weight_map = serde_json::Map::new();
    for (i, group) in groups.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        let mut header = serde_json::Map::new();
        let mut off = 0usize;
        for (name, shape) in group {
            let len = bytes(shape);
            header.insert(
                name.clone(),
                json!({"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len]}),
            );
            weight_map.insert(name.clone(), json!(file));
            off += len;
        }
        let h = serde_json::to_vec(&Value::Object(header))?;
        let mut buf = (h.len() as u64).to_le_bytes().to_vec();
        buf.extend_from_slice(&h);
        std::fs::write(dir.join(&file), &buf)?;
        let f = std::fs::OpenOptions::new().write(true).open(dir.join(&file))?;
        f.set_len((buf.len() + off) as u64)?;
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index)?,
    )?;
    std::fs::write(dir.join(".complete"), b"")?;
    Ok(())
}
