//! `cmi bench server`: the local Bedrock's per-request overhead, S3 throughput and concurrent streams, in one run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};

use crate::ctx::Ctx;

/// Arguments of `cmi bench server`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Small Converse calls to time.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Concurrent ConverseStream requests.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Skip the 64 MiB objects.
    #[arg(long)]
    small_only: bool,
}

fn creds(c: &bedrock_server::Credentials) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        c.access_key_id.clone(),
        c.secret_access_key.clone(),
        None,
        None,
        "bench",
    )
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    let dir = tempfile_dir()?;
    let mut cfg = bedrock_server::ServerConfig::new(dir.clone());
    cfg.warm = true;
    let server = bedrock_server::start(cfg).await.context("starting the local Bedrock")?;
    let url = server.endpoint_url();
    let region = aws_config::Region::new(server.region().to_string());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .endpoint_url(&url)
        .credentials_provider(creds(server.credentials()))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    println!("local Bedrock bench ({url}, data in {})", dir.display());

    // S3 throughput.
    s3.create_bucket()
        .bucket("bench")
        .send()
        .await
        .context("create bucket")?;
    let sizes: &[(usize, usize)] = if args.small_only {
        &[(1 << 20, 20)]
    } else {
        &[(1 << 20, 20), (64 << 20, 3)]
    };
    for &(size, n) in sizes {
        let data = vec![0x5au8; size];
        let t = Instant::now();
        for i in 0..n {
            s3.put_object()
                .bucket("bench")
                .key(format!("obj-{size}-{i}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(data.clone()))
                .send()
                .await
                .context("put_object")?;
        }
        let put = t.elapsed();
        let t = Instant::now();
        for i in 0..n {
            let o = s3
                .get_object()
                .bucket("bench")
                .key(format!("obj-{size}-{i}"))
                .send()
                .await
                .context("get_object")?;
            let b = o.body.collect().await.context("read body")?;
            anyhow::ensure!(b.into_bytes().len() == size, "short read");
        }
        let get = t.elapsed();
        let mib = (size * n) as f64 / (1u64 << 20) as f64;
        println!(
            "s3 {:>3} MiB objects x{n}: PUT {:>7.1} MiB/s   GET {:>7.1} MiB/s",
            size >> 20,
            mib / put.as_secs_f64(),
            mib / get.as_secs_f64()
        );
    }

    // Import a tiny model for the runtime figures.
    let model_dir = dir.join("tiny-src");
    model_synth::tiny_model(&model_dir, model_synth::Family::Llama).context("tiny model")?;
    for e in std::fs::read_dir(&model_dir)? {
        let e = e?;
        let body = aws_sdk_s3::primitives::ByteStream::from_path(e.path()).await?;
        s3.put_object()
            .bucket("bench")
            .key(format!("tiny/{}", e.file_name().to_string_lossy()))
            .body(body)
            .send()
            .await?;
    }
    let br = aws_sdk_bedrock::Client::new(&sdk);
    let arn = br
        .create_model_import_job()
        .job_name("bench-job")
        .imported_model_name("bench-tiny")
        .role_arn("arn:aws:iam::000000000000:role/bench")
        .model_data_source(aws_sdk_bedrock::types::ModelDataSource::S3DataSource(
            aws_sdk_bedrock::types::S3DataSource::builder()
                .s3_uri("s3://bench/tiny/")
                .build()?,
        ))
        .send()
        .await?
        .job_arn;
    let model_arn = loop {
        let j = br.get_model_import_job().job_identifier(&arn).send().await?;
        match j.status() {
            Some(aws_sdk_bedrock::types::ModelImportJobStatus::InProgress) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Some(aws_sdk_bedrock::types::ModelImportJobStatus::Completed) => {
                break j.imported_model_arn().unwrap_or_default().to_string();
            }
            _ => anyhow::bail!("import failed: {}", j.failure_message().unwrap_or("?")),
        }
    };

    let rt = aws_sdk_bedrockruntime::Client::new(&sdk);
    let msg = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("Hi".into()))
        .build()?;
    let ic = InferenceConfiguration::builder().max_tokens(1).temperature(0.0).build();
    // Warm-up call (loads the model); tells whether this build can generate at all.
    if let Err(e) = rt
        .converse()
        .model_id(&model_arn)
        .messages(msg.clone())
        .inference_config(ic.clone())
        .send()
        .await
    {
        let e = e.into_service_error();
        println!("converse: skipped, the server cannot generate in this build ({e})");
        return Ok(ExitCode::SUCCESS);
    }
    let mut lat = Vec::with_capacity(args.requests);
    let t = Instant::now();
    for _ in 0..args.requests {
        let t1 = Instant::now();
        rt.converse()
            .model_id(&model_arn)
            .messages(msg.clone())
            .inference_config(ic.clone())
            .send()
            .await?;
        lat.push(t1.elapsed());
    }
    let total = t.elapsed();
    lat.sort();
    println!(
        "converse (1 token) through the server: {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms",
        args.requests as f64 / total.as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );

    // The same generation in-process: template render + engine, no HTTP, SigV4 or JSON.
    let engine = {
        let d = model_dir.clone();
        tokio::task::spawn_blocking(move || infer_engine::Engine::load(&d, infer_engine::LoadOptions::default()))
            .await??
    };
    let template = chat_template::ChatTemplate::from_model_dir(&model_dir)?;
    let n = args.requests;
    let (mut local, local_total) = tokio::task::spawn_blocking(move || -> Result<(Vec<Duration>, Duration)> {
        let mut local = Vec::with_capacity(n);
        let t = Instant::now();
        for _ in 0..n {
            let t1 = Instant::now();
            let prompt = template.render(&chat_template::RenderRequest {
                messages: vec![serde_json::json!({"role": "user", "content": "Hi"})],
                tools: None,
                add_generation_prompt: true,
                template_kwargs: serde_json::Map::new(),
                now: None,
            })?;
            let mut req = infer_engine::GenerateRequest::new(prompt);
            req.max_tokens = 1;
            req.sampling.temperature = 0.0;
            let mut g = engine.generate(req)?;
            while let Some(ev) = g.blocking_next() {
                if matches!(
                    ev,
                    infer_engine::EngineEvent::Done { .. } | infer_engine::EngineEvent::Failed { .. }
                ) {
                    break;
                }
            }
            local.push(t1.elapsed());
        }
        Ok((local, t.elapsed()))
    })
    .await??;
    local.sort();
    let (p50s, p50l) = (pct(&lat, 0.5), pct(&local, 0.5));
    println!(
        "same generation in-process:            {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms",
        args.requests as f64 / local_total.as_secs_f64(),
        p50l.as_secs_f64() * 1e3,
        pct(&local, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "server overhead per request at p50: {:.2} ms (aim: under 2 ms)",
        (p50s.as_secs_f64() - p50l.as_secs_f64()) * 1e3
    );

    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.streams {
        let rt = rt.clone();
        let (m, msg) = (model_arn.clone(), msg.clone());
        tasks.push(tokio::spawn(async move {
            let ic = InferenceConfiguration::builder()
                .max_tokens(16)
                .temperature(0.0)
                .build();
            let mut out = rt
                .converse_stream()
                .model_id(m)
                .messages(msg)
                .inference_config(ic)
                .send()
                .await?;
            let mut n = 0usize;
            while let Some(_ev) = out.stream.recv().await? {
                n += 1;
            }
            anyhow::Ok((i, n))
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(e) => println!("stream failed: {e:#}"),
        }
    }
    println!(
        "{} concurrent ConverseStream: {ok} completed without error in {:.2} s",
        args.streams,
        t.elapsed().as_secs_f64()
    );
    Ok(if ok == args.streams {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("cmi-bench-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
