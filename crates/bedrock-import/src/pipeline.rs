//! The whole import as one call: a model folder → preflight → staged template repair → bucket → resumable upload →
//! Custom Model Import job → registration (and, on request, warming the model until it answers).
//!
//! [`import`] is what `cmi import` (and any other face of the tool) runs: the caller turns its arguments into
//! [`ImportSettings`], builds the SDK clients, and prints the [`Event`]s and the [`Outcome`]. Nothing here prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bedrock_wire::control;

use crate::{
    Error, Event, JobRequest, JobStatus, PollSettings, Progress, Registration, UploadPlan, UploadSettings,
    UploadSummary, Uploader,
};

/// Where the import runs: AWS in a region, or the local Bedrock (which needs no role and has a default bucket).
#[derive(Debug, Clone)]
pub struct Target {
    /// The region the job runs in.
    pub region: String,
    /// An explicit endpoint (the local Bedrock's, or another one), which also names the upload journal.
    pub endpoint_url: Option<String>,
    /// The local Bedrock: no role needed, a default bucket per region created on demand, quick polling.
    pub local: bool,
}

/// The directories the import keeps its state in.
#[derive(Debug, Clone)]
pub struct StateDirs {
    /// Staged copies for template repairs (`<dir>/<model name>`).
    pub staging: PathBuf,
    /// Upload journals (one per destination).
    pub uploads: PathBuf,
    /// Registrations waiting for a job started without waiting (see [`Pending`]).
    pub pending: PathBuf,
    /// The model registry file the model is registered in.
    pub registry_file: PathBuf,
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// The imported model's name (and its registry entry's).
    pub name: String,
    /// The bucket (default for the local Bedrock: `cmi-import-<region>`, created on demand).
    pub bucket: Option<String>,
    /// Create the bucket when it does not exist.
    pub create_bucket: bool,
    /// Key prefix (default: the model name).
    pub prefix: Option<String>,
    /// The role Bedrock assumes to read the bucket (required for AWS).
    pub role_arn: Option<String>,
    /// The `cmi:quantize` tag: how the local Bedrock runs the model (`q8_0`, `q4k`, `q4_0`, `none`).
    pub quantize: Option<String>,
    /// Repair the template in the source folder itself rather than in a staged copy.
    pub in_place: bool,
    /// Upload tuning (the journal is chosen here, one per destination).
    pub upload: UploadSettings,
    /// Wait for the job and register the model; without it, return once the job exists ([`Outcome::Started`]).
    pub wait: bool,
}

/// How an import ended (errors that stop it early are [`Error`]s).
#[derive(Debug)]
pub enum Outcome {
    /// The preflight found errors; nothing was uploaded.
    Rejected {
        /// The preflight's report.
        report: Box<model_folder::Report>,
    },
    /// The job was created and not waited for; `cmi import status` registers the model once it completes.
    Started {
        /// The job.
        job_arn: String,
        /// Where the model was uploaded.
        s3_uri: String,
        /// The upload.
        upload: UploadSummary,
    },
    /// The job failed; the uploaded data stays in the bucket.
    JobFailed {
        /// The job.
        job_arn: String,
        /// The job's failure message.
        message: String,
        /// Where the model was uploaded.
        s3_uri: String,
    },
    /// Imported and registered.
    Imported(Box<Imported>),
}

/// A completed import.
#[derive(Debug)]
pub struct Imported {
    /// The imported model.
    pub model_arn: String,
    /// The job.
    pub job_arn: String,
    /// Where the model was uploaded.
    pub s3_uri: String,
    /// The region.
    pub region: String,
    /// The model serves Converse.
    pub instruct_supported: bool,
    /// The registry file the model was registered in.
    pub registry_file: PathBuf,
    /// The upload.
    pub upload: UploadSummary,
}

/// A registration waiting for its import job: written when the import does not wait, completed by
/// [`Pending::complete`] once the job has completed (or at once when the import waits).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    job_arn: String,
    /// The template renders tools (with Converse); `toolUse` follows from it and the model's `instructSupported`.
    converse_tools: bool,
    registration: Registration,
}

impl Pending {
    fn path(dir: &Path, job_arn: &str) -> PathBuf {
        // The job's 12-character id (the ARN's last segment) names the file.
        let id: String = job_arn
            .rsplit('/')
            .next()
            .unwrap_or(job_arn)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        dir.join(format!("{id}.json"))
    }

    fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = Self::path(dir, &self.job_arn);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::io(&path, e.into()))?;
        model_registry::write_atomic(&path, &bytes).map_err(Error::Registry)
    }

    /// The registration waiting in `dir` for `job_arn`, if there is one.
    pub fn load(dir: &Path, job_arn: &str) -> Result<Option<Pending>, Error> {
        let path = Self::path(dir, job_arn);
        match std::fs::read(&path) {
            Ok(b) => {
                let p: Pending = serde_json::from_slice(&b).map_err(|e| Error::io(&path, e.into()))?;
                Ok((p.job_arn == job_arn).then_some(p))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.registration.name
    }

    /// Writes the entry for `model_arn` into `dirs.registry_file` (with what Bedrock says of the model) and forgets
    /// the pending file. Returns whether the model serves Converse.
    pub async fn complete(
        mut self,
        dirs: &StateDirs,
        model_arn: &str,
        imported: Option<crate::ImportedModel>,
    ) -> Result<bool, Error> {
        let r = &mut self.registration;
        r.model_arn = model_arn.to_string();
        if let Some(m) = imported {
            r.instruct_supported = m.instruct_supported.unwrap_or(r.instruct_supported);
            r.architecture = m.architecture.or(r.architecture.take());
        }
        r.tool_use = self.converse_tools || !r.instruct_supported;
        let instruct = r.instruct_supported;
        let (file, registration) = (dirs.registry_file.clone(), self.registration);
        tokio::task::spawn_blocking(move || crate::register(&file, &registration))
            .await
            .map_err(|e| Error::io(&dirs.registry_file, std::io::Error::other(e)))??;
        let _ = std::fs::remove_file(Self::path(&dirs.pending, &self.job_arn));
        Ok(instruct)
    }
}

/// `journal-<bucket>-<hash>.json`: readable, and unique per endpoint (or region), bucket and prefix, so that imports
/// to different places can run at once without one process's rewrite of the journal dropping the other's parts.
fn journal_name(place: &str, bucket: &str, prefix: &str) -> String {
    let digest = crc32c::crc32c(format!("{place}\n{bucket}\n{prefix}").as_bytes());
    format!("journal-{bucket}-{digest:08x}.json")
}

/// Runs the preflight of `dir` off the async threads.
pub async fn preflight(dir: &Path) -> Result<model_folder::Report, Error> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || model_folder::check(&d))
        .await
        .map_err(|e| Error::io(dir, std::io::Error::other(e)))?
        .map_err(Error::from)
}

/// Imports the model folder `source` as `settings` say, into `target` through the clients, reporting each step to
/// `progress`.
pub async fn import(
    source: &Path,
    settings: &ImportSettings,
    target: &Target,
    dirs: &StateDirs,
    s3: &aws_sdk_s3::Client,
    bedrock: &aws_sdk_bedrock::Client,
    progress: &dyn Progress,
) -> Result<Outcome, Error> {
    let name = &settings.name;
    // Everything that can be checked without IO first.
    crate::validate_model_name(name)?;
    if let Some(arn) = &settings.role_arn {
        crate::validate_role_arn(arn)?;
    }
    if !target.local && settings.role_arn.is_none() {
        return Err(Error::RoleArnRequired);
    }
    let bucket = match (&settings.bucket, target.local) {
        (Some(b), _) => b.clone(),
        (None, true) => format!("cmi-import-{}", target.region),
        (None, false) => return Err(Error::BucketRequired),
    };

    // 1. Preflight.
    let report = preflight(source).await?;
    progress.event(Event::Checked {
        report: Box::new(report.clone()),
    });
    if report.has_errors() {
        return Ok(Outcome::Rejected {
            report: Box::new(report),
        });
    }

    // 2. Template repair, staged unless in place.
    let mut upload_dir = source.to_path_buf();
    let mut final_report = report.clone();
    if crate::needs_repair(&report) {
        let staging = dirs.staging.join(name);
        let (src, names, stage, in_place) = (source.to_path_buf(), report.files.clone(), staging, settings.in_place);
        let repaired = tokio::task::spawn_blocking(move || crate::repair(&src, &names, &stage, in_place))
            .await
            .map_err(|e| Error::io(source, std::io::Error::other(e)))?;
        match repaired {
            Ok(r) => {
                let changed = r.outcome.changed;
                if changed {
                    upload_dir = r.dir.clone();
                }
                progress.event(Event::Repaired {
                    repair: Box::new(r),
                    staged: !settings.in_place,
                });
                if changed {
                    final_report = preflight(&upload_dir).await?;
                }
            }
            Err(e) => progress.event(Event::RepairFailed { message: e.to_string() }),
        }
    }

    // 3. Bucket and upload.
    crate::ensure_bucket(
        s3,
        &bucket,
        &target.region,
        settings.create_bucket || (target.local && settings.bucket.is_none()),
    )
    .await?;
    let prefix = settings.prefix.clone().unwrap_or_else(|| name.clone());
    let plan = UploadPlan::new(&upload_dir, &final_report.files, &bucket, &prefix);
    let upload_settings = UploadSettings {
        journal: Some(dirs.uploads.join(journal_name(
            target.endpoint_url.as_deref().unwrap_or(&target.region),
            &bucket,
            &prefix,
        ))),
        ..settings.upload.clone()
    };
    let upload = Uploader::new(s3.clone(), upload_settings)
        .upload(&plan, progress)
        .await?;
    progress.event(Event::Uploaded {
        summary: Box::new(upload.clone()),
    });

    // 4. Import job. It is named after what it imports and how the model is to run, so an identical run finds its
    // job again and a changed quantisation asks for a new one.
    let digest = upload.digest();
    let job_base = match &settings.quantize {
        Some(q) => format!("{name}-{q}"),
        None => name.clone(),
    };
    let s3_uri = plan.s3_uri();
    let run_started = SystemTime::now();
    let mut job_arn = String::new();
    for attempt in 0..2u32 {
        let req = JobRequest {
            job_name: if attempt == 0 {
                crate::job_name_for(&job_base, &digest)
            } else {
                crate::job_name_for(&job_base, &format!("{}r{attempt}", &digest[..6]))
            },
            model_name: name.clone(),
            role_arn: settings.role_arn.clone(),
            s3_uri: s3_uri.clone(),
            client_request_token: Some(crate::client_request_token(&job_base, &s3_uri, &digest, attempt)),
            model_tags: std::iter::once((control::CONTENT_TAG.to_string(), digest[..16].to_string()))
                .chain(
                    settings
                        .quantize
                        .iter()
                        .map(|q| (control::QUANTIZE_TAG.to_string(), q.clone())),
                )
                .collect(),
        };
        job_arn = crate::create_job(bedrock, &req).await?;
        // The same token returns the job an earlier identical run created; if that one failed, ask for a new one.
        let job = crate::get_job(bedrock, &job_arn).await?;
        let older = job
            .creation_time
            .is_some_and(|t| t < run_started - Duration::from_secs(5));
        if job.status == JobStatus::Failed && older && attempt == 0 {
            progress.event(Event::EarlierJobFailed {
                job_arn: job_arn.clone(),
            });
            continue;
        }
        break;
    }
    progress.event(Event::JobCreated {
        job_arn: job_arn.clone(),
    });

    // What to register once the job completes (now, or later by `Pending::complete`).
    let pending = Pending {
        job_arn: job_arn.clone(),
        converse_tools: final_report.converse_tools,
        registration: Registration {
            name: name.clone(),
            model_arn: String::new(),
            provider: crate::provider_for(final_report.model_type.as_deref()).to_string(),
            region: target.region.clone(),
            context_length: final_report.context_length,
            instruct_supported: final_report.instruct_supported,
            tool_use: final_report.converse_tools || !final_report.instruct_supported,
            model_source: Some(std::fs::canonicalize(&upload_dir).unwrap_or(upload_dir.clone())),
            architecture: final_report.architecture.clone(),
        },
    };
    if !settings.wait {
        pending.save(&dirs.pending)?;
        return Ok(Outcome::Started {
            job_arn,
            s3_uri,
            upload,
        });
    }
    let poll = if target.local {
        PollSettings {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            ..PollSettings::default()
        }
    } else {
        PollSettings::default()
    };
    let job = match crate::wait_for_job(bedrock, &job_arn, &poll, progress).await {
        Ok(j) => j,
        Err(Error::JobFailed { job_arn, message }) => {
            return Ok(Outcome::JobFailed {
                job_arn,
                message,
                s3_uri,
            });
        }
        Err(e) => return Err(e),
    };
    let model_arn = job.model_arn.clone().ok_or(Error::MissingMember {
        op: "GetModelImportJob",
        member: "importedModelArn",
    })?;

    // 5. Register.
    let imported = crate::get_imported_model(bedrock, &model_arn).await.ok();
    let instruct_supported = pending.complete(dirs, &model_arn, imported).await?;
    progress.event(Event::Registered {
        name: name.clone(),
        registry_file: dirs.registry_file.clone(),
    });
    Ok(Outcome::Imported(Box::new(Imported {
        model_arn,
        job_arn,
        s3_uri,
        region: target.region.clone(),
        instruct_supported,
        registry_file: dirs.registry_file.clone(),
        upload,
    })))
}

/// Registers a job's model if an import that did not wait left its registration in `dirs.pending` and the job has
/// completed; returns the model's name when it did.
pub async fn register_completed(
    bedrock: &aws_sdk_bedrock::Client,
    job: &crate::JobInfo,
    dirs: &StateDirs,
) -> Result<Option<String>, Error> {
    let (JobStatus::Completed, Some(model_arn)) = (&job.status, &job.model_arn) else {
        return Ok(None);
    };
    let Some(pending) = Pending::load(&dirs.pending, &job.job_arn)? else {
        return Ok(None);
    };
    let imported = crate::get_imported_model(bedrock, model_arn).await.ok();
    let name = pending.name().to_string();
    pending.complete(dirs, model_arn, imported).await?;
    Ok(Some(name))
}

/// Calls the model until it stops answering `ModelNotReadyException` (imported models load on their first call),
/// for at most `deadline`; returns the time it took. `instruct` models are called with Converse, the others with
/// InvokeModel.
pub async fn warm(
    runtime: &aws_sdk_bedrockruntime::Client,
    model_arn: &str,
    instruct: bool,
    deadline: Duration,
) -> Result<Duration, Error> {
    use aws_sdk_bedrockruntime::primitives::Blob;
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let not_ready = if instruct {
            let msg = Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Hi".into()))
                .build()
                .map_err(|e| Error::build("Converse", e))?;
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
                Err(e) => return Err(Error::bedrock("Converse", Some(model_arn), e)),
            }
        } else {
            let body = serde_json::json!({"prompt": "Hi", "max_tokens": 1}).to_string();
            match runtime
                .invoke_model()
                .model_id(model_arn)
                .body(Blob::new(body))
                .send()
                .await
            {
                Ok(_) => false,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_model_not_ready_exception()) => true,
                Err(e) => return Err(Error::bedrock("InvokeModel", Some(model_arn), e)),
            }
        };
        if !not_ready {
            return Ok(started.elapsed());
        }
        if started.elapsed() > deadline {
            return Err(Error::NotReady {
                model_arn: model_arn.to_string(),
                waited_secs: started.elapsed().as_secs(),
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
