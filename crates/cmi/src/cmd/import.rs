//! `cmi import`: a model folder → preflight → staged template repair → S3 upload → Custom Model Import job → model
//! registry (→ `--warm`), against AWS or the local Bedrock; plus `cmi import check | status | list`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use bedrock_import::{Event, ImportSettings, JobStatus, Outcome, Progress, StateDirs, Target, UploadSettings};
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
    let report = bedrock_import::preflight(&dir).await?;
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
    if let Some(name) = bedrock_import::register_completed(&bedrock, &job, &state_dirs(ctx)).await?
        && !ctx.global.quiet
    {
        eprintln!("registered `{name}` in {}", ctx.paths.registry_file().display());
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

/// Where `cmi import` keeps its state: staged repairs and upload journals in the cache, pending registrations
/// beside the registry.
fn state_dirs(ctx: &Ctx) -> StateDirs {
    StateDirs {
        staging: ctx.paths.cache_dir.join("import-staging"),
        uploads: ctx.paths.cache_dir.join("uploads"),
        pending: ctx.paths.config_dir.join("pending-imports"),
        registry_file: ctx.paths.registry_file(),
    }
}

/// Progress on stderr: indicatif bars on a terminal, plain lines otherwise, nothing with `--quiet`.
struct Display {
    bar: Option<ProgressBar>,
    plain: bool,
    /// The import's steps (check, template, upload, job, registry) are told, bars or not (not with `--quiet`).
    steps: bool,
    state: Mutex<PlainState>,
}

#[derive(Default)]
struct PlainState {
    hashed: u64,
    last_job_status: String,
}

impl Display {
    /// Bars and per-file lines unless `quiet`; the steps unless `quiet_steps`.
    fn new(quiet: bool, quiet_steps: bool) -> Display {
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
            steps: !quiet_steps,
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

    /// A step of the import: above the bar, or a line.
    fn step(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None if self.steps => eprintln!("{s}"),
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
            Event::Checked { report } => {
                if self.steps {
                    print_findings(&report);
                }
                self.step(&format!("check: {}", summary_line(&report)));
            }
            Event::Repaired { repair, staged } if repair.outcome.changed => {
                self.step(&format!(
                    "template: {} in {}{}",
                    repair.outcome.message,
                    repair.dir.display(),
                    if staged {
                        " (a staged copy; your folder is unchanged)"
                    } else {
                        ""
                    }
                ));
                for (from, to) in &repair.outcome.moved {
                    self.step(&format!("template: moved {} to {}", from.display(), to.display()));
                }
                tracing::info!(diff = %repair.outcome.diff, "template diff");
            }
            Event::Repaired { repair, .. } => self.step(&format!("template: {}", repair.outcome.message)),
            Event::RepairFailed { message } => self.step(&format!(
                "warning: the chat template could not be repaired ({message}); importing it as it is"
            )),
            Event::Uploaded { summary: u } => {
                if let Some(b) = &self.bar {
                    b.set_position(b.length().unwrap_or(0));
                }
                self.step(&format!(
                    "upload: {} sent, {} already there, {} resumed, in {:.1}s ({}/s)",
                    human(u.bytes_sent),
                    human(u.bytes_skipped),
                    human(u.bytes_resumed),
                    u.elapsed.as_secs_f64(),
                    human((u.bytes_sent as f64 / u.elapsed.as_secs_f64().max(1e-3)) as u64)
                ));
            }
            Event::EarlierJobFailed { job_arn } => self.step(&format!(
                "import job: {job_arn} (from an earlier run) failed; starting a new one"
            )),
            Event::JobCreated { job_arn } => self.step(&format!("import job: {job_arn}")),
            Event::Registered { name, registry_file } => {
                self.step(&format!("registered `{name}` in {}", registry_file.display()))
            }
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
    if Path::new(source).is_dir() {
        return Ok(PathBuf::from(source));
    }
    let display = Display::new(quiet, quiet);
    display.set_message("download");
    let dir = resolve_source_with(source, &display, quiet).await;
    display.finish();
    dir
}

/// [`resolve_source`], the download reported to `progress` (and told on stderr unless `quiet`).
async fn resolve_source_with(source: &str, progress: &dyn Progress, quiet: bool) -> Result<PathBuf> {
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
    let d = match bedrock_import::download(&hub, &settings, progress).await {
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

/// An import (or its check) for the web UI: the same source resolution, preflight and pipeline as `cmi import` with
/// its default settings, reported to `progress`.
pub(crate) async fn web_import(
    ctx: &Ctx,
    request: web_ui::ImportRequest,
    progress: &dyn Progress,
) -> Result<web_ui::ImportEnd> {
    let source_dir = resolve_source_with(&request.source, progress, true).await?;
    if request.check_only {
        let report = bedrock_import::preflight(&source_dir).await?;
        return Ok(web_ui::ImportEnd::Checked(Box::new(report)));
    }
    let aws = ctx.aws().await?;
    let target = Target {
        region: aws.region.clone(),
        endpoint_url: aws.endpoint_url.clone(),
        local: aws.local,
    };
    let settings = ImportSettings {
        name: request.name.clone(),
        bucket: request.bucket.clone().filter(|b| !b.is_empty()),
        create_bucket: request.create_bucket,
        prefix: None,
        role_arn: request.role_arn.clone().filter(|r| !r.is_empty()),
        quantize: None,
        in_place: false,
        upload: UploadSettings::default(),
        wait: true,
    };
    let outcome = bedrock_import::import(
        &source_dir,
        &settings,
        &target,
        &state_dirs(ctx),
        &s3_client(&aws),
        &aws_sdk_bedrock::Client::new(&aws.sdk),
        progress,
    )
    .await
    .map_err(|e| with_hint(e, &settings, &target))?;
    Ok(web_ui::ImportEnd::Outcome(Box::new(outcome)))
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
    if args.in_place && !Path::new(&source).is_dir() {
        bail!(
            "--in-place needs a local folder, and {source} is not one: a downloaded snapshot in the Hugging Face cache is never edited\n\nhint: drop --in-place (the repair is staged), or download the folder and pass its path"
        );
    }
    let source_dir = resolve_source(&source, quiet).await?;
    let aws = ctx.aws().await?;
    let target = Target {
        region: aws.region.clone(),
        endpoint_url: aws.endpoint_url.clone(),
        local: aws.local,
    };
    let settings = ImportSettings {
        name: name.clone(),
        bucket: args.bucket.clone(),
        create_bucket: args.create_bucket,
        prefix: args.prefix.clone(),
        role_arn: args.role_arn.clone(),
        quantize: args.quantize.clone(),
        in_place: args.in_place,
        upload: UploadSettings {
            part_size: args.part_size_mib.max(5) << 20,
            max_memory: args.max_memory_mib << 20,
            max_concurrency: args.concurrency.max(1),
            ..UploadSettings::default()
        },
        wait: !args.no_wait,
    };
    let display = Display::new(quiet || args.json, quiet);
    let outcome = bedrock_import::import(
        &source_dir,
        &settings,
        &target,
        &state_dirs(ctx),
        &s3_client(&aws),
        &aws_sdk_bedrock::Client::new(&aws.sdk),
        &display,
    )
    .await;
    display.finish();
    let imported = match outcome.map_err(|e| with_hint(e, &settings, &target))? {
        Outcome::Rejected { report } => {
            eprintln!(
                "error: {} has {} error(s); nothing was uploaded",
                source_dir.display(),
                report.errors().count()
            );
            return Ok(ExitCode::from(1));
        }
        Outcome::Started { job_arn, s3_uri, .. } => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"jobArn": job_arn, "s3Uri": s3_uri}))?
                );
            } else {
                println!("{job_arn}");
            }
            if !quiet {
                eprintln!(
                    "hint: `cmi import status JOB` shows its progress, and registers the model once the job has completed"
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Outcome::JobFailed {
            job_arn,
            message,
            s3_uri,
        } => {
            eprintln!("error: import job {job_arn} failed: {message}");
            eprintln!(
                "\nhint: the uploaded data stays at {s3_uri}; fix the model and run the same command again (unchanged files are not sent again)"
            );
            return Ok(ExitCode::from(2));
        }
        Outcome::Imported(imported) => imported,
    };

    let mut warm_secs = None;
    if args.warm {
        if !quiet {
            eprintln!("warm: calling the model until it is ready");
        }
        let runtime = aws_sdk_bedrockruntime::Client::new(&aws.sdk);
        let took = bedrock_import::warm(
            &runtime,
            &imported.model_arn,
            imported.instruct_supported,
            WARM_DEADLINE,
        )
        .await
        .map_err(|e| match e {
            bedrock_import::Error::NotReady { .. } => {
                anyhow::anyhow!("{e}\n\nhint: try again later; imported models can take tens of minutes to load")
            }
            e => anyhow::Error::new(e).context(format!("warming {}", imported.model_arn)),
        })?;
        if !quiet {
            eprintln!("warm: the model answered after {:.1}s", took.as_secs_f64());
        }
        warm_secs = Some(took.as_secs_f64());
    }

    let upload = &imported.upload;
    if args.json {
        let out = json!({
            "name": name, "modelArn": imported.model_arn, "jobArn": imported.job_arn, "s3Uri": imported.s3_uri,
            "region": imported.region, "instructSupported": imported.instruct_supported,
            "registry": imported.registry_file,
            "upload": {"bytesTotal": upload.bytes_total, "bytesSent": upload.bytes_sent, "bytesSkipped": upload.bytes_skipped,
                       "bytesResumed": upload.bytes_resumed, "seconds": upload.elapsed.as_secs_f64()},
            "warmSeconds": warm_secs, "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", imported.model_arn);
        if !quiet {
            eprintln!(
                "done in {:.1}s: `cmi chat --model {name}`",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `--warm` calls a model that is still loading.
const WARM_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The pipeline's error, with what to do about it where that is known.
fn with_hint(e: bedrock_import::Error, settings: &ImportSettings, target: &Target) -> anyhow::Error {
    use bedrock_import::Error as E;
    let bucket = settings.bucket.as_deref().unwrap_or_default();
    let hint = match &e {
        E::RoleArnRequired => {
            "pass --role-arn arn:aws:iam::<account>:role/<role Bedrock can assume to read the bucket>".to_string()
        }
        E::BucketRequired => format!(
            "pass --bucket NAME (add --create-bucket to create it in {})",
            target.region
        ),
        E::NoSuchBucket { .. } => format!("pass --create-bucket to create `{bucket}`"),
        E::BucketInOtherRegion { bucket_region, .. } => {
            format!("use a bucket in the import's region, or pass --region {bucket_region}")
        }
        _ => return anyhow::Error::new(e).context(format!("importing `{}`", settings.name)),
    };
    anyhow::anyhow!("{e}\n\nhint: {hint}")
}
