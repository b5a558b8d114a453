//! The model-import control plane: CreateModelImportJob, Get/ListModelImportJobs, Get/List/DeleteImportedModel.
//!
//! Member names, status values and ARN shapes follow the service model (botocore `bedrock/2023-04-20/service-2.json`);
//! the members' patterns are `bedrock_wire::control`'s.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use crate::db::{Insert, JobRow, ModelRow};
use crate::error::{ApiError, json as json_response};
use crate::ids::{new_id, now};
use bedrock_wire::control;

use crate::job_request::quantize_from_request;
use crate::jobs;
use crate::state::App;

type R = Result<Response, ApiError>;

fn invalid(value: &str, member: &str, constraint: &'static str) -> ApiError {
    ApiError::validation(
        control::Invalid {
            value: value.to_string(),
            member: member.to_string(),
            constraint,
        }
        .to_string(),
    )
}

fn internal(e: crate::Error) -> ApiError {
    tracing::error!(error = %e, "state database failure");
    ApiError::internal("internal error in the local Bedrock state database")
}

fn str_member<'a>(body: &'a Value, member: &str, required: bool) -> Result<Option<&'a str>, ApiError> {
    match body.get(member) {
        None | Some(Value::Null) if required => Err(ApiError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::validation(format!(
            "member {member} must be a string, got {other}"
        ))),
    }
}

fn validate_tags(body: &Value, member: &str) -> Result<(), ApiError> {
    control::check_tags(body, member).map_err(|e| match e {
        Some(e) => ApiError::validation(e.to_string()),
        None => ApiError::validation(format!("member {member} must be a list of {{key, value}}")),
    })
}

pub(crate) fn create_job(app: &std::sync::Arc<App>, body: &[u8]) -> R {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("request body is not valid JSON: {e}")))?;
    if !req.is_object() {
        return Err(ApiError::validation("request body must be a JSON object"));
    }
    let job_name = str_member(&req, "jobName", true)?.unwrap_or_default();
    if !control::valid_job_name(job_name) {
        return Err(invalid(job_name, "jobName", control::JOB_NAME));
    }
    let model_name = str_member(&req, "importedModelName", true)?.unwrap_or_default();
    if !control::valid_model_name(model_name) {
        return Err(invalid(model_name, "importedModelName", control::MODEL_NAME));
    }
    // The service requires roleArn; the local Bedrock needs no IAM, so it only checks the format when one is given.
    let role_arn = str_member(&req, "roleArn", false)?.unwrap_or_default();
    if !role_arn.is_empty() && !control::valid_role_arn(role_arn) {
        return Err(invalid(role_arn, "roleArn", control::ROLE_ARN));
    }
    let s3_uri = req
        .pointer("/modelDataSource/s3DataSource/s3Uri")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("modelDataSource.s3DataSource.s3Uri is required"))?;
    if control::parse_s3_uri(s3_uri).is_none() {
        return Err(invalid(s3_uri, "modelDataSource.s3DataSource.s3Uri", control::S3_URI));
    }
    let token = str_member(&req, "clientRequestToken", false)?;
    if let Some(t) = token
        && !control::valid_client_token(t)
    {
        return Err(invalid(t, "clientRequestToken", control::CLIENT_TOKEN));
    }
    validate_tags(&req, "jobTags")?;
    validate_tags(&req, "importedModelTags")?;
    quantize_from_request(&req)?;

    let id = new_id();
    let model_id = new_id();
    let t = now();
    let job = JobRow {
        arn: app.arn("model-import-job", &id),
        id,
        name: job_name.to_string(),
        model_name: model_name.to_string(),
        model_arn: app.arn("imported-model", &model_id),
        model_id,
        role_arn: role_arn.to_string(),
        s3_uri: s3_uri.to_string(),
        status: "InProgress".into(),
        failure_message: None,
        creation_time: t.clone(),
        last_modified_time: t,
        end_time: None,
        client_token: token.map(str::to_string),
        request: req.to_string(),
    };
    match app.db.insert_job(&job).map_err(internal)? {
        Insert::Existing(arn) => Ok(json_response(StatusCode::CREATED, &json!({"jobArn": arn}))),
        Insert::Conflict(msg) => Err(ApiError::conflict(msg)),
        Insert::Created => {
            tracing::info!(job = %job.name, model = %job.model_name, uri = %job.s3_uri, "import job created");
            let arn = job.arn.clone();
            jobs::spawn(app.clone(), job);
            Ok(json_response(StatusCode::CREATED, &json!({"jobArn": arn})))
        }
    }
}

fn data_source(uri: &str) -> Value {
    json!({"s3DataSource": {"s3Uri": uri}})
}

fn job_json(j: &JobRow) -> Value {
    let req: Value = serde_json::from_str(&j.request).unwrap_or(Value::Null);
    let mut v = json!({
        "jobArn": j.arn, "jobName": j.name, "importedModelName": j.model_name, "roleArn": j.role_arn,
        "modelDataSource": data_source(&j.s3_uri), "status": j.status, "creationTime": j.creation_time,
        "lastModifiedTime": j.last_modified_time,
    });
    let m = v.as_object_mut().expect("json! object literal");
    if j.status == "Completed" {
        m.insert("importedModelArn".into(), j.model_arn.clone().into());
    }
    if let Some(f) = &j.failure_message {
        m.insert("failureMessage".into(), f.clone().into());
    }
    if let Some(e) = &j.end_time {
        m.insert("endTime".into(), e.clone().into());
    }
    if let Some(vpc) = req.get("vpcConfig") {
        m.insert("vpcConfig".into(), vpc.clone());
    }
    if let Some(k) = req.get("importedModelKmsKeyId") {
        m.insert("importedModelKmsKeyArn".into(), k.clone());
    }
    v
}

pub(crate) fn get_job(app: &App, ident: &str) -> R {
    match app.db.job(ident).map_err(internal)? {
        Some(j) => Ok(json_response(StatusCode::OK, &job_json(&j))),
        None => Err(ApiError::not_found(format!("Model import job {ident} not found"))),
    }
}

struct ListParams {
    after: Option<chrono::DateTime<chrono::Utc>>,
    before: Option<chrono::DateTime<chrono::Utc>>,
    status: Option<String>,
    name_contains: Option<String>,
    max: usize,
    offset: usize,
    descending: bool,
}

fn list_params(q: &[(String, String)], statuses: bool) -> Result<ListParams, ApiError> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let time = |k: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        match get(k) {
            None => Ok(None),
            Some(v) => chrono::DateTime::parse_from_rfc3339(v)
                .map(|d| Some(d.with_timezone(&chrono::Utc)))
                .map_err(|_| invalid(v, k, "Member must be an ISO-8601 timestamp")),
        }
    };
    let status = match get("statusEquals") {
        Some(s) if statuses && !matches!(s, "InProgress" | "Completed" | "Failed") => {
            return Err(invalid(
                s,
                "statusEquals",
                "Member must satisfy enum value set: [InProgress, Completed, Failed]",
            ));
        }
        s => s.map(str::to_string),
    };
    let max = match get("maxResults") {
        None => 1000,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(invalid(v, "maxResults", "Member must have value between 1 and 1000")),
        },
    };
    let offset = match get("nextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("cmi-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::validation(format!("invalid nextToken {t:?}: pass the token a list call returned"))
            })?,
    };
    if let Some(s) = get("sortBy")
        && s != "CreationTime"
    {
        return Err(invalid(
            s,
            "sortBy",
            "Member must satisfy enum value set: [CreationTime]",
        ));
    }
    let descending = match get("sortOrder") {
        None | Some("Descending") => true,
        Some("Ascending") => false,
        Some(s) => {
            return Err(invalid(
                s,
                "sortOrder",
                "Member must satisfy enum value set: [Ascending, Descending]",
            ));
        }
    };
    Ok(ListParams {
        after: time("creationTimeAfter")?,
        before: time("creationTimeBefore")?,
        status,
        name_contains: get("nameContains").map(str::to_string),
        max,
        offset,
        descending,
    })
}

fn keep(p: &ListParams, created: &str, name: &str, status: Option<&str>) -> bool {
    let t = chrono::DateTime::parse_from_rfc3339(created)
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok();
    p.after.is_none_or(|a| t.is_some_and(|t| t > a))
        && p.before.is_none_or(|b| t.is_some_and(|t| t < b))
        && p.status.as_deref().is_none_or(|s| status == Some(s))
        && p.name_contains.as_deref().is_none_or(|n| name.contains(n))
}

fn page<T>(mut items: Vec<T>, p: &ListParams) -> (Vec<T>, Option<String>) {
    if p.descending {
        items.reverse();
    }
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(p.offset).take(p.max).collect();
    let next = (p.offset + page.len() < total).then(|| format!("cmi-{}", p.offset + page.len()));
    (page, next)
}

pub(crate) fn list_jobs(app: &App, q: &[(String, String)]) -> R {
    let p = list_params(q, true)?;
    let jobs: Vec<JobRow> = app
        .db
        .jobs()
        .map_err(internal)?
        .into_iter()
        .filter(|j| keep(&p, &j.creation_time, &j.name, Some(&j.status)))
        .collect();
    let (jobs, next) = page(jobs, &p);
    let summaries: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut v = json!({"jobArn": j.arn, "jobName": j.name, "status": j.status,
                "lastModifiedTime": j.last_modified_time, "creationTime": j.creation_time,
                "importedModelName": j.model_name});
            let m = v.as_object_mut().expect("json! object literal");
            if let Some(e) = &j.end_time {
                m.insert("endTime".into(), e.clone().into());
            }
            if j.status == "Completed" {
                m.insert("importedModelArn".into(), j.model_arn.clone().into());
            }
            v
        })
        .collect();
    let mut out = json!({"modelImportJobSummaries": summaries});
    if let Some(n) = next {
        out["nextToken"] = n.into();
    }
    Ok(json_response(StatusCode::OK, &out))
}

fn model_json(m: &ModelRow) -> Value {
    json!({
        "modelArn": m.arn, "modelName": m.name, "jobName": m.job_name, "jobArn": m.job_arn,
        "modelDataSource": data_source(&m.s3_uri), "creationTime": m.creation_time,
        "modelArchitecture": m.architecture, "instructSupported": m.instruct_supported,
        "customModelUnits": {"customModelUnitsPerModelCopy": m.custom_model_units, "customModelUnitsVersion": "v1.0"},
    })
}

pub(crate) fn get_model(app: &App, ident: &str) -> R {
    match app.db.model(ident).map_err(internal)? {
        Some(m) => Ok(json_response(StatusCode::OK, &model_json(&m))),
        None => Err(ApiError::not_found(format!("Model {ident} not found"))),
    }
}

pub(crate) fn list_models(app: &App, q: &[(String, String)]) -> R {
    let p = list_params(q, false)?;
    let models: Vec<ModelRow> = app
        .db
        .models()
        .map_err(internal)?
        .into_iter()
        .filter(|m| keep(&p, &m.creation_time, &m.name, None))
        .collect();
    let (models, next) = page(models, &p);
    let summaries: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({"modelArn": m.arn, "modelName": m.name, "creationTime": m.creation_time,
                "instructSupported": m.instruct_supported, "modelArchitecture": m.architecture})
        })
        .collect();
    let mut out = json!({"modelSummaries": summaries});
    if let Some(n) = next {
        out["nextToken"] = n.into();
    }
    Ok(json_response(StatusCode::OK, &out))
}

pub(crate) fn delete_model(app: &App, ident: &str) -> R {
    let Some(m) = app.db.model(ident).map_err(internal)? else {
        return Err(ApiError::not_found(format!("Model {ident} not found")));
    };
    app.runtime.unload(&m.id);
    app.db.delete_model(&m.id).map_err(internal)?;
    let dir = std::path::PathBuf::from(&m.dir);
    if dir.starts_with(&app.models_dir)
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the model folder");
    }
    tracing::info!(model = %m.name, "imported model deleted");
    Ok(json_response(StatusCode::OK, &json!({})))
}
