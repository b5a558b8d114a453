//! The import view's stream: the host runs `bedrock_import::import` (the pipeline of `cmi import`) and its `Event`s
//! go to the page as JSON lines, byte counts coalesced to a few updates a second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use bedrock_import::{Event, Outcome, Progress};
use serde_json::{Value, json};

use crate::state::State as App;
use crate::stream::{self, Lines};
use crate::{Error, ImportEnd, ImportRequest};

/// How often byte counts are sent at most.
const TICK: Duration = Duration::from_millis(150);

/// Turns pipeline events into lines.
struct Reporter {
    lines: Lines,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    to_send: u64,
    sent: u64,
    upload_started: Option<Instant>,
    download_total: u64,
    downloaded: u64,
    download_started: Option<Instant>,
    last: Option<Instant>,
}

impl Counts {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= TICK) {
            self.last = Some(now);
            true
        } else {
            false
        }
    }

    fn upload(&self) -> Value {
        let secs = self.upload_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        json!({"t": "upload", "sent": self.sent, "total": self.to_send, "rate": rate(self.sent, secs)})
    }

    fn download(&self) -> Value {
        let secs = self.download_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        json!({"t": "download", "done": self.downloaded, "total": self.download_total, "rate": rate(self.downloaded, secs)})
    }
}

/// Bytes a second (0 until a tenth of a second has passed).
fn rate(bytes: u64, secs: f64) -> u64 {
    if secs < 0.1 { 0 } else { (bytes as f64 / secs) as u64 }
}

impl Reporter {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for Reporter {
    fn event(&self, event: Event) {
        let line = match event {
            Event::Hashed { .. } | Event::FileStarted { .. } => None,
            Event::Planned {
                files,
                total_bytes,
                to_send,
            } => {
                let mut c = self.counts();
                c.to_send = to_send;
                c.sent = 0;
                c.upload_started = Some(Instant::now());
                Some(json!({"t": "planned", "files": files, "total": total_bytes, "to_send": to_send}))
            }
            Event::Sent { bytes, .. } => {
                let mut c = self.counts();
                c.sent += bytes;
                c.due().then(|| c.upload())
            }
            Event::Skipped { key, bytes } => Some(json!({"t": "skipped", "key": key, "bytes": bytes})),
            Event::FileDone { key } => Some(json!({"t": "file_done", "key": key})),
            Event::DownloadStarted { file, bytes } => {
                let mut c = self.counts();
                c.download_total += bytes;
                c.download_started.get_or_insert_with(Instant::now);
                Some(json!({"t": "download_file", "file": file, "bytes": bytes}))
            }
            Event::Downloaded { bytes, .. } => {
                let mut c = self.counts();
                c.downloaded += bytes;
                c.due().then(|| c.download())
            }
            Event::Checked { report } => Some(json!({"t": "checked", "report": *report})),
            Event::Repaired { repair, staged } => Some(json!({
                "t": "repaired", "changed": repair.outcome.changed, "message": repair.outcome.message,
                "diff": repair.outcome.diff, "staged": staged,
            })),
            Event::RepairFailed { message } => Some(json!({"t": "repair_failed", "message": message})),
            Event::Uploaded { summary } => {
                let c = self.counts();
                self.lines.send(c.upload());
                let secs = summary.elapsed.as_secs_f64();
                Some(json!({
                    "t": "uploaded", "sent": summary.bytes_sent, "skipped": summary.bytes_skipped,
                    "resumed": summary.bytes_resumed, "seconds": secs, "rate": rate(summary.bytes_sent, secs.max(0.1)),
                }))
            }
            Event::EarlierJobFailed { job_arn } => Some(json!({"t": "earlier_job_failed", "job": job_arn})),
            Event::JobCreated { job_arn } => Some(json!({"t": "job_created", "job": job_arn})),
            Event::Job {
                job_arn,
                status,
                elapsed,
            } => Some(json!({"t": "job", "job": job_arn, "status": status, "elapsed": elapsed.as_secs()})),
            Event::Registered { name, .. } => Some(json!({"t": "registered", "name": name})),
            _ => None,
        };
        if let Some(l) = line {
            self.lines.send(l);
        }
    }
}

/// The last line of an import.
fn end_json(end: Result<ImportEnd, String>, name: &str) -> Value {
    match end {
        Ok(ImportEnd::Checked(report)) => json!({"t": "check_done", "report": *report}),
        Ok(ImportEnd::Outcome(o)) => match *o {
            Outcome::Imported(i) => {
                json!({"t": "done", "name": name, "model_arn": i.model_arn, "instruct_supported": i.instruct_supported})
            }
            Outcome::Rejected { report } => json!({"t": "rejected", "errors": report.errors().count()}),
            Outcome::Started { job_arn, .. } => json!({"t": "started", "job": job_arn}),
            Outcome::JobFailed { job_arn, message, .. } => json!({"t": "failed", "job": job_arn, "message": message}),
        },
        Err(message) => json!({"t": "error", "message": message}),
    }
}

/// `POST /ui/api/import`: checks or imports, streaming the pipeline's events.
pub(crate) async fn run(
    State(app): State<Arc<App>>,
    axum::Json(req): axum::Json<ImportRequest>,
) -> Result<Response, Error> {
    if req.source.trim().is_empty() {
        return Err(Error::BadRequest(
            "no source: give a model folder's path or a Hugging Face repo id (org/name)".into(),
        ));
    }
    if !req.check_only {
        bedrock_import::validate_model_name(&req.name).map_err(|e| Error::BadRequest(e.to_string()))?;
    }
    let (lines, response) = stream::channel();
    let reporter = Arc::new(Reporter {
        lines: lines.clone(),
        state: Mutex::new(Counts::default()),
    });
    tokio::spawn(async move {
        let name = req.name.clone();
        let end = app.host.import(req, reporter.clone()).await;
        drop(reporter);
        lines.send(end_json(end, &name));
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::{Counts, rate};

    #[test]
    fn byte_counts_are_coalesced_and_rates_wait_for_time() {
        let mut c = Counts::default();
        assert!(c.due(), "the first count goes out");
        assert!(!c.due(), "the next within the tick does not");
        assert_eq!(rate(1000, 0.05), 0);
        assert_eq!(rate(1000, 2.0), 500);
    }
}
