//! `cmi import`: a model folder → preflight → staged template repair → S3 upload → Custom Model Import job → model
//! registry (→ `--warm`), against AWS or the local Bedrock; plus `cmi import check | status | list`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use bedrock_import::{Event, JobRequest, JobStatus, PollSettings, Progress, Registration, UploadPlan, UploadSettings};
use indicatif::{ProgressBar, ProgressStyle};
use model_folder::{Report, Severity};
use serde_json::json;

use crate::ctx::{AwsTarget, Ctx};
use crate::env;

/// Arguments of `cmi import`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<ImportCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ImportCommand {
    /// Preflight a model folder without uploading anything (exit 1 when it has errors).
    Check(CheckArgs),
    /// Show an import job (by ARN or name).
    Status(StatusArgs),
    /// List import jobs, newest first.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The model: a Hugging Face model folder, or a repo id (`org/name`, `org/name@revision`) to download into the
    /// Hugging Face cache (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` are honoured).
    #[arg(required = true)]
    source: Option<String>,
    /// Name of the imported model (and of its registry entry).
    #[arg(long, required = true)]
    name: Option<String>,
    /// S3 bucket to upload to (default for the local Bedrock: one per region, created on demand).
    #[arg(long)]
    bucket: Option<String>,
    /// Create the bucket when it does not exist.
    #[arg(long)]
    create_bucket: bool,
    /// Key prefix in the bucket (default: the model name).
    #[arg(long)]
    prefix: Option<String>,
    /// IAM role Bedrock assumes to read the bucket (required for AWS; the local Bedrock needs none).
    #[arg(long)]
    role_arn: Option<String>,
    /// Return as soon as the job is created (print its ARN); see `cmi import status`.
    #[arg(long)]
    no_wait: bool,
    /// After the import, call the model until it answers (no more ModelNotReadyException).
    #[arg(long)]
    warm: bool,
    /// How the local Bedrock runs this model: quantised at load (`q8_0`, `q4k`, `q4_0`) or `none` for the weights
    /// as stored, whatever `cmi serve --quantize` says. Sent as the `cmi:quantize` tag of the imported model (Amazon
    /// Bedrock keeps the tag and runs the model as it always does).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(super::QUANTIZE_OR_NONE))]
    quantize: Option<String>,
    /// Repair the chat template in the source folder itself instead of a staged copy.
    #[arg(long)]
    in_place: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Multipart part size in MiB.
    #[arg(long, default_value_t = bedrock_import::UploadSettings::default().part_size >> 20)]
    part_size_mib: u64,
    /// Upper bound on file data held in memory during the upload, in MiB.
    #[arg(long, default_value_t = bedrock_import::UploadSettings::default().max_memory >> 20)]
    max_memory_mib: u64,
    /// Upload requests in flight.
    #[arg(long, default_value_t = bedrock_import::UploadSettings::default().max_concurrency)]
    concurrency: usize,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The model folder, or a repo id to download first.
    source: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Job ARN or name.
    job: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    match args.command {
        Some(ImportCommand::Check(a)) => check(a, ctx).await,
        Some(ImportCommand::Status(a)) => status(a, ctx).await,
        Some(ImportCommand::List(a)) => list(a, ctx).await,
        None => import(args.run, ctx).await,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// check

async fn preflight(dir: &Path) -> Result<Report> {
    let d = dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || model_folder::check(&d)).await??;
    Ok(report)
}

fn print_findings(report: &Report) {
    for f in &report.findings {
        eprintln!("{}: [{}] {}", f.severity, f.code, f.message);
        if let Some(fix) = &f.fix
            && f.severity != Severity::Info
        {
            eprintln!("  fix: {fix}");
        }
    }
}

fn summary_line(report: &Report) -> String {
    let errors = report.errors().count();
    let warnings = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    format!(
        "{} ({}), {:.2} GB of weights in {} tensors, context {}, Converse {}, tools {}: {errors} error(s), {warnings} warning(s)",
        report.architecture.as_deref().unwrap_or("unknown architecture"),
        report.model_type.as_deref().unwrap_or("?"),
        report.weight_bytes as f64 / 1e9,
        report.tensor_count,
        report
            .context_length
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into()),
        if report.instruct_supported { "yes" } else { "no" },
        if report.converse_tools { "yes" } else { "no" },
    )
}

async fn check(args: CheckArgs, ctx: &Ctx) -> Result<ExitCode> {
    let dir = resolve_source(&args.source, ctx.global.quiet || args.json).await?;
    let started = Instant::now();
    let report = preflight(&dir).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if !ctx.global.quiet {
            print_findings(&report);
        }
        println!("{}: {}", args.source, summary_line(&report));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "checked");
    }
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

// ---------------------------------------------------------------------------------------------------------------
// status / list

fn iso(t: Option<SystemTime>) -> Option<String> {
    use aws_sdk_bedrock::primitives::{DateTime, DateTimeFormat};
    t.map(|t| DateTime::from(t).fmt(DateTimeFormat::DateTime).unwrap_or_default())
}

fn job_json(j: &bedrock_import::JobInfo) -> serde_json::Value {
    json!({
        "jobArn": j.job_arn, "jobName": j.job_name, "importedModelName": j.model_name,
        "importedModelArn": j.model_arn, "status": j.status.as_str(), "failureMessage": j.failure_message,
        "creationTime": iso(j.creation_time), "endTime": iso(j.end_time), "s3Uri": j.s3_uri,
    })
}

async fn status(args: StatusArgs, ctx: &Ctx) -> Result<ExitCode> {
    let target = ctx.aws().await?;
    let bedrock = aws_sdk_bedrock::Client::new(&target.sdk);
    let job = bedrock_import::get_job(&bedrock, &args.job).await?;
    // A job started with `--no-wait` is registered here, once it has completed.
    if job.status == JobStatus::Completed
        && let Some(model_arn) = &job.model_arn
        && let Some(pending) = Pending::load(ctx, &job.job_arn)?
    {
        let imported = bedrock_import::get_imported_model(&bedrock, model_arn).await.ok();
        let name = pending.registration.name.clone();
        let (file, _) = pending.register(ctx, model_arn, imported).await?;
        if !ctx.global.quiet {
            eprintln!("registered `{name}` in {}", file.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job_json(&job))?);
    } else {
        println!("job:    {}", job.job_arn);
        println!("status: {}", job.status);
        if let Some(m) = &job.model_name {
            println!("model:  {m}");
        }
        if let Some(a) = &job.model_arn {
            println!("arn:    {a}");
        }
        if let Some(f) = &job.failure_message {
            println!("reason: {f}");
        }
    }
    Ok(if job.status == JobStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn list(args: ListArgs, ctx: &Ctx) -> Result<ExitCode> {
    let target = ctx.aws().await?;
    let bedrock = aws_sdk_bedrock::Client::new(&target.sdk);
    let jobs = bedrock_import::list_jobs(&bedrock, args.limit).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&jobs.iter().map(job_json).collect::<Vec<_>>())?
        );
    } else if jobs.is_empty() {
        eprintln!("no import jobs in {}", target.region);
    } else {
        for j in &jobs {
            println!(
                "{:<11} {:<24} {:<30} {}",
                j.status.as_str(),
                iso(j.creation_time).unwrap_or_default(),
                j.model_name.as_deref().unwrap_or("-"),
                j.job_arn
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------------------------
// import

/// A registration waiting for its import job: written by `cmi import --no-wait`, completed by `cmi import status`
/// (or at once when the import waits).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    job_arn: String,
    /// The template renders tools (with Converse); `toolUse` follows from it and the model's `instructSupported`.
    converse_tools: bool,
    registration: Registration,
}

impl Pending {
    fn path(ctx: &Ctx, job_arn: &str) -> PathBuf {
        // The job's 12-character id (the ARN's last segment) names the file.
        let id: String = job_arn
            .rsplit('/')
            .next()
            .unwrap_or(job_arn)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        ctx.paths.config_dir.join("pending-imports").join(format!("{id}.json"))
    }

    fn save(&self, ctx: &Ctx) -> Result<()> {
        let path = Self::path(ctx, &self.job_arn);
        let bytes = serde_json::to_vec_pretty(self)?;
        model_registry::write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn load(ctx: &Ctx, job_arn: &str) -> Result<Option<Pending>> {
        let path = Self::path(ctx, job_arn);
        match std::fs::read(&path) {
            Ok(b) => {
                let p: Pending = serde_json::from_slice(&b).with_context(|| format!("reading {}", path.display()))?;
                Ok((p.job_arn == job_arn).then_some(p))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    }

    /// Writes the entry for `model_arn` into the registry (with what Bedrock says of the model) and forgets the
    /// pending file. Returns the registry file and whether the model serves Converse.
    async fn register(
        mut self,
        ctx: &Ctx,
        model_arn: &str,
        imported: Option<bedrock_import::ImportedModel>,
    ) -> Result<(PathBuf, bool)> {
        let r = &mut self.registration;
        r.model_arn = model_arn.to_string();
        if let Some(m) = imported {
            r.instruct_supported = m.instruct_supported.unwrap_or(r.instruct_supported);
            r.architecture = m.architecture.or(r.architecture.take());
        }
        r.tool_use = self.converse_tools || !r.instruct_supported;
        let instruct = r.instruct_supported;
        let name = r.name.clone();
        let registry_file = ctx.paths.registry_file();
        let (rf, reg) = (registry_file.clone(), self.registration);
        tokio::task::spawn_blocking(move || bedrock_import::register(&rf, &reg))
            .await?
            .with_context(|| format!("registering `{name}` in {}", registry_file.display()))?;
        let _ = std::fs::remove_file(Self::path(ctx, &self.job_arn));
        Ok((registry_file, instruct))
    }
}

/// Progress on stderr: indicatif bars on a terminal, plain lines otherwise, nothing with `--quiet`.
struct Display {
    bar: Option<ProgressBar>,
    plain: bool,
    state: Mutex<PlainState>,
}

#[derive(Default)]
struct PlainState {
    hashed: u64,
    last_job_status: String,
}

impl Display {
    fn new(quiet: bool) -> Display {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                // The template is a constant; it parses.
                .expect("progress template")
                .progress_chars("=> "),
            );
            b.set_message("checksum");
            b
        });
        Display {
            bar,
            plain: !quiet && !tty,
            state: Mutex::new(PlainState::default()),
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None if self.plain => eprintln!("{s}"),
            None => {}
        }
    }

    fn set_message(&self, m: &'static str) {
        if let Some(b) = &self.bar {
            b.set_message(m);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn event(&self, event: Event) {
        match event {
            Event::Hashed { bytes } => {
                if let Some(b) = &self.bar {
                    b.inc(bytes);
                } else {
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).hashed += bytes;
                }
            }
            Event::Planned {
                files,
                total_bytes,
                to_send,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(to_send);
                    b.set_position(0);
                    b.reset_eta();
                    b.set_message("upload");
                }
                self.line(&format!(
                    "upload: {files} files, {} total, {} to send",
                    human(total_bytes),
                    human(to_send)
                ));
            }
            Event::DownloadStarted { file, bytes } => {
                if let Some(b) = &self.bar {
                    b.inc_length(bytes);
                }
                self.line(&format!("  downloading {file} ({})", human(bytes)));
            }
            Event::Downloaded { bytes, .. } => {
                if let Some(b) = &self.bar {
                    b.inc(bytes);
                }
            }
            Event::Skipped { key, bytes } => self.line(&format!("  already there: {key} ({})", human(bytes))),
            Event::FileStarted { key, resumed_bytes, .. } if resumed_bytes > 0 => {
                self.line(&format!("  resuming {key}: {} already uploaded", human(resumed_bytes)))
            }
            Event::Sent { bytes, .. } => {
                if let Some(b) = &self.bar {
                    b.inc(bytes);
                }
            }
            Event::FileDone { key } if self.bar.is_none() => self.line(&format!("  uploaded {key}")),
            Event::Job { status, elapsed, .. } => {
                if let Some(b) = &self.bar {
                    b.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("progress template"));
                    b.set_message(format!("import job {status} ({}s)", elapsed.as_secs()));
                    b.tick();
                } else {
                    let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    if st.last_job_status != status {
                        self.line(&format!("import job: {status} ({}s)", elapsed.as_secs()));
                        st.last_job_status = status;
                    }
                }
            }
            _ => {}
        }
    }
}

/// `journal-<bucket>-<hash>.json`: readable, and unique per endpoint (or region), bucket and prefix.
fn journal_name(place: &str, bucket: &str, prefix: &str) -> String {
    let digest = crc32c::crc32c(format!("{place}\n{bucket}\n{prefix}").as_bytes());
    format!("journal-{bucket}-{digest:08x}.json")
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

fn s3_client(target: &AwsTarget) -> aws_sdk_s3::Client {
    // Local and other explicit endpoints take path-style requests (no per-bucket DNS names on 127.0.0.1).
    let conf = aws_sdk_s3::config::Builder::from(&target.sdk)
        .force_path_style(target.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The folder to import: a local directory, or a repo id downloaded into the Hugging Face cache (its snapshot folder).
async fn resolve_source(source: &str, quiet: bool) -> Result<PathBuf> {
    let path = PathBuf::from(source);
    if path.is_dir() {
        return Ok(path);
    }
    if path.exists() {
        bail!(
            "{source} is a file, not a model folder\n\nhint: pass the folder that holds config.json and the *.safetensors files"
        );
    }
    let Some(hub) = bedrock_import::HubSource::parse(source) else {
        bail!(
            "{source}: no such folder, and not a Hugging Face repo id (expected `org/name` or `org/name@revision`)\n\nhint: pass the folder that holds config.json and the *.safetensors files"
        );
    };
    let settings = env::hub_settings();
    if !quiet {
        eprintln!(
            "download: {hub} from {} into {}",
            settings.endpoint,
            settings.cache_dir.display()
        );
    }
    let display = Display::new(quiet);
    display.set_message("download");
    let d = bedrock_import::download(&hub, &settings, &display).await;
    display.finish();
    let d = match d {
        Ok(d) => d,
        Err(e) => bail!(
            "{e}\n\nhint: {source} is not a local folder, so it was looked up as a Hugging Face repo id at {}; for a local model, check the path",
            settings.endpoint
        ),
    };
    if !quiet {
        eprintln!(
            "download: {} files at commit {} ({} fetched, {} already in the cache; skipped {})",
            d.files.len(),
            d.commit,
            human(d.bytes_downloaded),
            d.cached,
            if d.skipped.is_empty() {
                "none".to_string()
            } else {
                d.skipped.join(", ")
            }
        );
    }
    Ok(d.dir)
}

async fn import(args: RunArgs, ctx: &Ctx) -> Result<ExitCode> {
    let started = Instant::now();
    // clap enforces both (required unless a subcommand is given).
    let source = args.source.clone().context("SOURCE is required")?;
    let name = args.name.clone().context("--name is required")?;
    // Everything that can be checked without IO first.
    bedrock_import::validate_model_name(&name)?;
    if let Some(arn) = &args.role_arn {
        bedrock_import::validate_role_arn(arn)?;
    }
    let quiet = ctx.global.quiet;
    let say = |s: &str| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    if args.in_place && !Path::new(&source).is_dir() {
        bail!(
            "--in-place needs a local folder, and {source} is not one: a downloaded snapshot in the Hugging Face cache is never edited\n\nhint: drop --in-place (the repair is staged), or download the folder and pass its path"
        );
    }
    let source_dir = resolve_source(&source, quiet).await?;

    // 1. Preflight.
    let report = preflight(&source_dir).await?;
    if !quiet {
        print_findings(&report);
    }
    say(&format!("check: {}", summary_line(&report)));
    if report.has_errors() {
        eprintln!(
            "error: {} has {} error(s); nothing was uploaded",
            source_dir.display(),
            report.errors().count()
        );
        return Ok(ExitCode::from(1));
    }

    // 2. Target (before anything is written: a missing role fails here).
    let target = ctx.aws().await?;
    if !target.local && args.role_arn.is_none() {
        bail!(
            "{}\n\nhint: pass --role-arn arn:aws:iam::<account>:role/<role Bedrock can assume to read the bucket>",
            bedrock_import::Error::RoleArnRequired
        );
    }

    // 3. Template repair, staged unless --in-place.
    let mut upload_dir = source_dir.clone();
    let mut final_report = report.clone();
    if bedrock_import::needs_repair(&report) {
        let staging = ctx.paths.cache_dir.join("import-staging").join(&name);
        let (src, names, stage, in_place) = (source_dir.clone(), report.files.clone(), staging.clone(), args.in_place);
        match tokio::task::spawn_blocking(move || bedrock_import::repair(&src, &names, &stage, in_place)).await? {
            Ok(r) if r.outcome.changed => {
                say(&format!(
                    "template: {} in {}{}",
                    r.outcome.message,
                    r.dir.display(),
                    if in_place {
                        ""
                    } else {
                        " (a staged copy; your folder is unchanged)"
                    }
                ));
                for (from, to) in &r.outcome.moved {
                    say(&format!("template: moved {} to {}", from.display(), to.display()));
                }
                tracing::info!(diff = %r.outcome.diff, "template diff");
                upload_dir = r.dir.clone();
                final_report = preflight(&upload_dir).await?;
            }
            Ok(r) => say(&format!("template: {}", r.outcome.message)),
            Err(e) => say(&format!(
                "warning: the chat template could not be repaired ({e}); importing it as it is"
            )),
        }
    }

    // 4. Bucket and upload.
    let s3 = s3_client(&target);
    let bucket = match (&args.bucket, target.local) {
        (Some(b), _) => b.clone(),
        (None, true) => format!("cmi-import-{}", target.region),
        (None, false) => bail!(
            "no --bucket given\n\nhint: pass --bucket NAME (add --create-bucket to create it in {})",
            target.region
        ),
    };
    bedrock_import::ensure_bucket(
        &s3,
        &bucket,
        &target.region,
        args.create_bucket || (target.local && args.bucket.is_none()),
    )
    .await
    .with_context(|| format!("preparing s3://{bucket}"))
    .map_err(|e| add_bucket_hint(e, &bucket))?;
    let prefix = args.prefix.clone().unwrap_or_else(|| name.clone());
    let plan = UploadPlan::new(&upload_dir, &final_report.files, &bucket, &prefix);
    let settings = UploadSettings {
        part_size: args.part_size_mib.max(5) << 20,
        max_memory: args.max_memory_mib << 20,
        max_concurrency: args.concurrency.max(1),
        // One journal per destination, so that imports to different places can run at once without one
        // process's rewrite of the journal dropping the other's acknowledged parts.
        journal: Some(ctx.paths.cache_dir.join("uploads").join(journal_name(
            target.endpoint_url.as_deref().unwrap_or(&target.region),
            &bucket,
            &prefix,
        ))),
        ..UploadSettings::default()
    };
    let display = Display::new(quiet || args.json);
    let upload = bedrock_import::Uploader::new(s3, settings)
        .upload(&plan, &display)
        .await;
    display.finish();
    let upload = upload.with_context(|| format!("uploading {} to {}", upload_dir.display(), plan.s3_uri()))?;
    say(&format!(
        "upload: {} sent, {} already there, {} resumed, in {:.1}s ({}/s)",
        human(upload.bytes_sent),
        human(upload.bytes_skipped),
        human(upload.bytes_resumed),
        upload.elapsed.as_secs_f64(),
        human((upload.bytes_sent as f64 / upload.elapsed.as_secs_f64().max(1e-3)) as u64)
    ));

    // 5. Import job.
    let bedrock = aws_sdk_bedrock::Client::new(&target.sdk);
    // The job is named after what it imports and how the model is to run, so an identical run finds its job again
    // and a changed `--quantize` asks for a new one.
    let digest = upload.digest();
    let job_base = match &args.quantize {
        Some(q) => format!("{name}-{q}"),
        None => name.clone(),
    };
    let s3_uri = plan.s3_uri();
    let run_started = SystemTime::now();
    let mut job_arn = String::new();
    for attempt in 0..2u32 {
        let req = JobRequest {
            job_name: if attempt == 0 {
                bedrock_import::job_name_for(&job_base, &digest)
            } else {
                bedrock_import::job_name_for(&job_base, &format!("{}r{attempt}", &digest[..6]))
            },
            model_name: name.clone(),
            role_arn: args.role_arn.clone(),
            s3_uri: s3_uri.clone(),
            client_request_token: Some(bedrock_import::client_request_token(
                &job_base, &s3_uri, &digest, attempt,
            )),
            model_tags: std::iter::once(("cmi:content".to_string(), digest[..16].to_string()))
                .chain(args.quantize.iter().map(|q| ("cmi:quantize".to_string(), q.clone())))
                .collect(),
        };
        job_arn = bedrock_import::create_job(&bedrock, &req)
            .await
            .with_context(|| format!("creating the import job for {s3_uri}"))?;
        // The same token returns the job an earlier identical run created; if that one failed, ask for a new one.
        let job = bedrock_import::get_job(&bedrock, &job_arn).await?;
        let older = job
            .creation_time
            .is_some_and(|t| t < run_started - Duration::from_secs(5));
        if job.status == JobStatus::Failed && older && attempt == 0 {
            say(&format!(
                "import job: {job_arn} (from an earlier run) failed; starting a new one"
            ));
            continue;
        }
        break;
    }
    say(&format!("import job: {job_arn}"));
    // What to register once the job completes (now, or later by `cmi import status`).
    let pending = Pending {
        job_arn: job_arn.clone(),
        converse_tools: final_report.converse_tools,
        registration: Registration {
            name: name.clone(),
            model_arn: String::new(),
            provider: bedrock_import::provider_for(final_report.model_type.as_deref()).to_string(),
            region: target.region.clone(),
            context_length: final_report.context_length,
            instruct_supported: final_report.instruct_supported,
            tool_use: final_report.converse_tools || !final_report.instruct_supported,
            model_source: Some(std::fs::canonicalize(&upload_dir).unwrap_or(upload_dir.clone())),
            architecture: final_report.architecture.clone(),
        },
    };
    if args.no_wait {
        pending.save(ctx)?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"jobArn": job_arn, "s3Uri": s3_uri}))?
            );
        } else {
            println!("{job_arn}");
        }
        say("hint: `cmi import status JOB` shows its progress, and registers the model once the job has completed");
        return Ok(ExitCode::SUCCESS);
    }
    let display = Display::new(quiet || args.json);
    let poll = if target.local {
        PollSettings {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            ..PollSettings::default()
        }
    } else {
        PollSettings::default()
    };
    let job = bedrock_import::wait_for_job(&bedrock, &job_arn, &poll, &display).await;
    display.finish();
    let job = match job {
        Ok(j) => j,
        Err(bedrock_import::Error::JobFailed { job_arn, message }) => {
            eprintln!("error: import job {job_arn} failed: {message}");
            eprintln!(
                "\nhint: the uploaded data stays at {s3_uri}; fix the model and run the same command again (unchanged files are not sent again)"
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let model_arn = job
        .model_arn
        .clone()
        .context("the completed job names no imported model ARN")?;

    // 6. Register.
    let bedrock_imported = bedrock_import::get_imported_model(&bedrock, &model_arn).await.ok();
    let (registry_file, instruct) = pending.register(ctx, &model_arn, bedrock_imported).await?;
    say(&format!("registered `{name}` in {}", registry_file.display()));

    // 7. Warm.
    let mut warm_secs = None;
    if args.warm {
        say("warm: calling the model until it is ready");
        warm_secs = Some(warm(&target, &model_arn, instruct, quiet).await?);
    }

    if args.json {
        let out = json!({
            "name": name, "modelArn": model_arn, "jobArn": job_arn, "s3Uri": s3_uri, "region": target.region,
            "instructSupported": instruct, "registry": registry_file,
            "upload": {"bytesTotal": upload.bytes_total, "bytesSent": upload.bytes_sent, "bytesSkipped": upload.bytes_skipped,
                       "bytesResumed": upload.bytes_resumed, "seconds": upload.elapsed.as_secs_f64()},
            "warmSeconds": warm_secs, "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{model_arn}");
        say(&format!(
            "done in {:.1}s: `cmi chat --model {name}`",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn add_bucket_hint(e: anyhow::Error, bucket: &str) -> anyhow::Error {
    let hint = match e.downcast_ref::<bedrock_import::Error>() {
        Some(bedrock_import::Error::NoSuchBucket { .. }) => format!("pass --create-bucket to create `{bucket}`"),
        Some(bedrock_import::Error::BucketInOtherRegion { bucket_region, .. }) => {
            format!("use a bucket in the import's region, or pass --region {bucket_region}")
        }
        _ => return e,
    };
    anyhow::anyhow!("{e:#}\n\nhint: {hint}")
}

/// Calls the model until it stops answering `ModelNotReadyException`; returns the seconds it took.
async fn warm(target: &AwsTarget, model_arn: &str, instruct: bool, quiet: bool) -> Result<f64> {
    use aws_sdk_bedrockruntime::primitives::Blob;
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
    let runtime = aws_sdk_bedrockruntime::Client::new(&target.sdk);
    let started = Instant::now();
    let deadline = Duration::from_secs(30 * 60);
    let mut wait = Duration::from_secs(1);
    loop {
        let not_ready = if instruct {
            let msg = Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Hi".into()))
                .build()?;
            match runtime
                .converse()
                .model_id(model_arn)
                .messages(msg)
                .inference_config(InferenceConfiguration::builder().max_tokens(1).build())
                .send()
                .await
            {
                Ok(_) => false,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_model_not_ready_exception()) => true,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("warming {model_arn}"))),
            }
        } else {
            let body = serde_json::to_vec(&json!({"prompt": "Hi", "max_tokens": 1}))?;
            match runtime
                .invoke_model()
                .model_id(model_arn)
                .body(Blob::new(body))
                .send()
                .await
            {
                Ok(_) => false,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_model_not_ready_exception()) => true,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("warming {model_arn}"))),
            }
        };
        if !not_ready {
            let secs = started.elapsed().as_secs_f64();
            if !quiet {
                eprintln!("warm: the model answered after {secs:.1}s");
            }
            return Ok(secs);
        }
        if started.elapsed() > deadline {
            bail!(
                "{model_arn} still not ready after {} minutes\n\nhint: try again later; imported models can take tens of minutes to load",
                deadline.as_secs() / 60
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
