//! Import jobs: copy the S3 folder into a model folder under the data directory, run the preflight, load the model with
//! the engine once, then mark the job Completed (registering the model) or Failed with a service-like message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::{JobRow, ModelRow};
use crate::ids::now;
use crate::job_request::{parse_s3_uri, quantize_from_request, stream_tools_from_request};
use crate::state::App;

/// Restarts the jobs a previous run left InProgress (the server was stopped or killed mid-import).
pub(crate) fn resume(app: &Arc<App>) {
    match app.db.jobs() {
        Ok(jobs) => {
            for j in jobs.into_iter().filter(|j| j.status == "InProgress") {
                tracing::info!(job = %j.name, "resuming import job");
                spawn(app.clone(), j);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list import jobs to resume"),
    }
}

/// Runs a job in the background.
pub(crate) fn spawn(app: Arc<App>, job: JobRow) {
    tokio::spawn(async move {
        let outcome = run(&app, &job).await;
        let t = now();
        let recorded = match outcome {
            Ok(model) => {
                tracing::info!(job = %job.name, model = %model.name, "import job completed");
                app.db.complete_job(&job.id, &model, &t)
            }
            Err(message) => {
                tracing::warn!(job = %job.name, %message, "import job failed");
                app.db.fail_job(&job.id, &message, &t)
            }
        };
        if let Err(e) = recorded {
            tracing::error!(job = %job.name, error = %e, "cannot record the import job outcome");
        }
    });
}

/// What the preflight learnt about a model folder.
#[derive(Debug, Clone)]
pub(crate) struct Preflight {
    pub(crate) architecture: String,
    pub(crate) instruct_supported: bool,
    pub(crate) converse_tools: bool,
    pub(crate) weight_bytes: u64,
}

async fn run(app: &Arc<App>, job: &JobRow) -> Result<ModelRow, String> {
    let (bucket, prefix) =
        parse_s3_uri(&job.s3_uri).ok_or_else(|| format!("The S3 URI {} is not valid.", job.s3_uri))?;
    let bucket_dir = app.s3.root().join(&bucket);
    if !bucket_dir.is_dir() {
        return Err(format!(
            "Amazon Bedrock could not access the S3 bucket {bucket}: the bucket does not exist. Check the S3 URI and the import role's access."
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    let src = if prefix.is_empty() {
        bucket_dir.clone()
    } else {
        bucket_dir.join(prefix)
    };
    if !src.is_dir() || std::fs::read_dir(&src).map(|mut d| d.next().is_none()).unwrap_or(true) {
        return Err(format!(
            "No model files were found at {}. Upload the model folder and try again.",
            job.s3_uri
        ));
    }
    let dest = app.models_dir.join(&job.model_id);
    let partial = app.models_dir.join(format!(".{}.partial", job.model_id));
    let (src2, partial2, dest2) = (src.clone(), partial.clone(), dest.clone());
    let copied = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&partial2);
        if dest2.is_dir() {
            std::fs::remove_dir_all(&dest2)?;
        }
        copy_tree(&src2, &partial2)?;
        std::fs::rename(&partial2, &dest2)
    })
    .await
    .map_err(|e| format!("Internal error while reading the model files: {e}"))?;
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(format!(
            "Amazon Bedrock could not read the model files from {}: {e}",
            job.s3_uri
        ));
    }

    let fail = |msg: String| {
        let _ = std::fs::remove_dir_all(&dest);
        msg
    };
    let dir = dest.clone();
    let pre = tokio::task::spawn_blocking(move || preflight(&dir))
        .await
        .map_err(|e| fail(format!("Internal error during model validation: {e}")))?
        .map_err(&fail)?;

    let request: serde_json::Value = serde_json::from_str(&job.request).unwrap_or_default();
    // Checked when the job was created.
    let quantize = quantize_from_request(&request).ok().flatten();

    // Load once with the engine to prove the model runs (as it will run); keep it loaded when the server is warm.
    // A quantised load writes the model's quantised-weights cache here, so no later load quantises it again.
    let settings = app
        .runtime
        .settings_for(&job.model_name, &job.model_arn, quantize.as_deref());
    let loaded = app.runtime.load_for_import(&job.model_id, &dest, settings).await;
    if let Err(msg) = loaded {
        return Err(fail(msg));
    }

    let cmu = i64::try_from(pre.weight_bytes.div_ceil(8 << 30))
        .unwrap_or(i64::MAX)
        .max(1);
    Ok(ModelRow {
        id: job.model_id.clone(),
        name: job.model_name.clone(),
        arn: job.model_arn.clone(),
        job_name: job.name.clone(),
        job_arn: job.arn.clone(),
        s3_uri: job.s3_uri.clone(),
        creation_time: now(),
        architecture: pre.architecture,
        instruct_supported: pre.instruct_supported,
        converse_tools: pre.converse_tools,
        custom_model_units: cmu,
        dir: dest.to_string_lossy().into_owned(),
        stream_tools: stream_tools_from_request(&request),
        quantize,
    })
}

/// Hard-links (or copies, across file systems) every file of `src` into `dst`.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let from = entry.path();
        let to: PathBuf = dst.join(&name);
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() && std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// The import-time validation, with the service's wording for failures.
pub(crate) fn preflight(dir: &Path) -> Result<Preflight, String> {
    let config_path = dir.join("config.json");
    let config: serde_json::Value = std::fs::read(&config_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            "The model is missing a valid config.json file. Include config.json in the model folder.".to_string()
        })?;
    let arch = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    // The service names the architecture by `model_type` (bedrock-cmi.md §1.4); the engine decides which run here
    // (one list, beside its loader), and refuses what it cannot run whatever the `model_type` says.
    let unsupported = if infer_engine::MODEL_TYPES.contains(&arch.as_str()) {
        infer_engine::unsupported_architecture(&config)
    } else {
        Some(arch.clone())
    };
    if let Some(unsupported) = unsupported {
        return Err(format!(
            "Amazon bedrock does not support the architecture ({unsupported}) of the model that you are importing. Try again with one of the following supported architectures: [{}]",
            infer_engine::MODEL_TYPES.join(", ")
        ));
    }
    // The same preflight as `cmi import check`.
    let report =
        model_folder::check(dir).map_err(|e| format!("Amazon Bedrock could not read the model folder: {e}"))?;
    if report.has_errors() {
        let errors: Vec<String> = report.errors().map(|f| format!("{} ({})", f.message, f.code)).collect();
        return Err(truncate_message(format!(
            "The model failed validation: {}",
            errors.join("; ")
        )));
    }
    let weight_bytes = report.weight_bytes;
    if weight_bytes == 0 {
        return Err("No model weights were found. The model weights must be in .safetensors files.".into());
    }
    let (instruct_supported, converse_tools) = (report.instruct_supported, report.converse_tools);
    Ok(Preflight {
        architecture: arch,
        instruct_supported,
        converse_tools,
        weight_bytes,
    })
}

/// `failureMessage` is at most 2048 characters.
fn truncate_message(mut m: String) -> String {
    if m.len() > 2048 {
        let mut cut = 2045;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push_str("...");
    }
    m
}
