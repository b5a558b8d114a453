//! Server assembly and the route table: health, the Bedrock operations (control plane, runtime, the OpenAI-compatible
//! surfaces) behind their authentication, and S3 for everything else; and the endpoint advertisement.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;

use bedrock_wire::ErrorType;

use crate::db::Db;
use crate::error::ApiError;
use crate::models::Models;
use crate::runtime::openai;
use crate::s3::S3;
use crate::state::App;
use crate::{Error, RunningElsewhere, RunningServer, ServerConfig, control, creds, jobs, runtime, sigv4};

/// Largest Bedrock request body (InvokeModel's documented blob limit is 25,000,000 bytes).
pub(crate) const MAX_BODY: usize = 25_000_000;
/// Path of the unauthenticated health probe (not a valid bucket name, so it never shadows S3).
pub(crate) const HEALTH_PATH: &str = "/_cmi/health";
const ENDPOINT_FILE: &str = "endpoint.json";
/// Path prefix of an app mounted beside the Bedrock APIs (`RunningServer::mount`): `ui` is no valid bucket name (S3
/// wants 3 characters at least), so it never shadows S3.
pub(crate) const MOUNT_PREFIX: &str = "/ui";

pub(crate) async fn start(config: ServerConfig) -> Result<RunningServer, Error> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
        path: data_dir.clone(),
        source,
    })?;
    let runtime = Models::new(&config);
    let creds = creds::resolve(&data_dir, config.credentials.as_ref())?;
    let api_key = creds::resolve_api_key(&data_dir)?;
    let db = Db::open(&data_dir.join("state.sqlite3"))?;
    let s3 = S3::new(&data_dir.join("s3"), &creds)?;
    let models_dir = data_dir.join("models");
    std::fs::create_dir_all(&models_dir).map_err(|source| Error::Io {
        path: models_dir.clone(),
        source,
    })?;

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.bind,
        source,
    })?;

    let app = Arc::new(App {
        runtime,
        config: config.clone(),
        creds: creds.clone(),
        api_key: api_key.clone(),
        db,
        s3,
        models_dir,
        invocations: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        mounted: std::sync::OnceLock::new(),
    });
    jobs::resume(&app);
    start_idle_unload(&app);

    let router = axum::Router::new().fallback(dispatch).with_state(app.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served_app = app.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "local Bedrock stopped");
        }
        served_app.runtime.unload_all();
    });

    let advertised = if config.advertise {
        Some(advertise(&data_dir, addr, &config.region)?)
    } else {
        None
    };
    tracing::info!(%addr, region = %config.region, data_dir = %data_dir.display(), "local Bedrock listening");
    Ok(RunningServer {
        app,
        addr,
        region: config.region,
        credentials: creds,
        api_key,
        shutdown: Some(tx),
        advertised,
        task: Some(task),
    })
}

/// Starts the idle-unload sweeper.
fn start_idle_unload(app: &Arc<App>) {
    let weak = Arc::downgrade(app);
    let period = (app.config.idle_unload / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(app) = weak.upgrade() else { return };
            app.runtime.unload_idle();
        }
    });
}

async fn dispatch(State(app): State<Arc<App>>, req: Request<Body>) -> Response {
    let path = req.uri().path();
    if path == HEALTH_PATH {
        return crate::error::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "service": "cmi-local-bedrock", "region": app.region()}),
        );
    }
    if is_mounted(path) {
        return match app.mounted.get() {
            Some(router) => {
                use tower::ServiceExt as _;
                match router.clone().oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
            None => (StatusCode::NOT_FOUND, "nothing is served here\n").into_response(),
        };
    }
    if is_bedrock(path) {
        return bedrock(app, req).await;
    }
    app.s3.call(req).await
}

/// `/ui` and everything under `/ui/`.
fn is_mounted(path: &str) -> bool {
    path.strip_prefix(MOUNT_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_bedrock(path: &str) -> bool {
    openai::surface(path).is_some()
        || path == "/model-import-jobs"
        || path.starts_with("/model-import-jobs/")
        || path == "/imported-models"
        || path.starts_with("/imported-models/")
        || path.starts_with("/model/")
}

/// Authenticates a Bedrock request as the service does: a SigV4 signature, or a Bedrock API key as a bearer token.
fn authenticate(app: &App, parts: &http::request::Parts, body: &[u8]) -> Result<(), ApiError> {
    let bearer = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return if sigv4::constant_time_eq(token.trim().as_bytes(), app.api_key.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorType::UnrecognizedClient,
                "The security token included in the request is invalid (the API key is not this server's).",
            ))
        };
    }
    sigv4::verify(
        &parts.method,
        &parts.uri,
        &parts.headers,
        body,
        &app.creds,
        SystemTime::now(),
    )
    .map_err(|e| {
        let (kind, message) = e.kind_and_message();
        tracing::debug!(code = %kind, message, path = parts.uri.path(), "refused unsigned or badly signed request");
        ApiError::new(kind, message)
    })
}

async fn bedrock(app: Arc<App>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let surface = openai::surface(parts.uri.path());
    let refuse = |e: ApiError| {
        if surface.is_some() {
            e.openai_response()
        } else {
            e.into_response()
        }
    };
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(ApiError::too_large(format!(
                "request body exceeds the limit of {MAX_BODY} bytes"
            )));
        }
    };
    if let Err(e) = authenticate(&app, &parts, &body) {
        return refuse(e);
    }
    if let Some(surface) = surface {
        if parts.method != Method::POST {
            return refuse(ApiError::unknown_operation(format!(
                "no operation for {} {}",
                parts.method,
                parts.uri.path()
            )));
        }
        return openai::handle(&app, surface, &body).await;
    }
    let path = parts.uri.path().to_string();
    let query = sigv4::parse_query(parts.uri.query().unwrap_or(""));
    let seg = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let result = match (&parts.method, path.as_str()) {
        (&Method::POST, "/model-import-jobs") => control::create_job(&app, &body),
        (&Method::GET, "/model-import-jobs") => control::list_jobs(&app, &query),
        (&Method::GET, p) if p.starts_with("/model-import-jobs/") => {
            control::get_job(&app, &seg(&p["/model-import-jobs/".len()..]))
        }
        (&Method::GET, "/imported-models") => control::list_models(&app, &query),
        (&Method::GET, p) if p.starts_with("/imported-models/") => {
            control::get_model(&app, &seg(&p["/imported-models/".len()..]))
        }
        (&Method::DELETE, p) if p.starts_with("/imported-models/") => {
            control::delete_model(&app, &seg(&p["/imported-models/".len()..]))
        }
        (&Method::POST, p) if p.starts_with("/model/") => {
            let rest = &p["/model/".len()..];
            match rest.rsplit_once('/') {
                Some((id, op)) => return runtime::handle(&app, &seg(id), op, &parts.headers, body).await,
                None => Err(ApiError::unknown_operation("unknown operation")),
            }
        }
        _ => Err(ApiError::unknown_operation(format!(
            "no operation for {} {path}",
            parts.method
        ))),
    };
    result.unwrap_or_else(|e| e.into_response())
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Advertisement {
    endpoint_url: String,
    region: String,
    pid: u32,
}

fn advertise(data_dir: &Path, addr: SocketAddr, region: &str) -> Result<PathBuf, Error> {
    let path = data_dir.join(ENDPOINT_FILE);
    let tmp = data_dir.join(format!(".{ENDPOINT_FILE}.{}.tmp", std::process::id()));
    let ad = Advertisement {
        endpoint_url: format!("http://{addr}"),
        region: region.to_string(),
        pid: std::process::id(),
    };
    let text = serde_json::to_string_pretty(&ad).map_err(|e| Error::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, text).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Removes `endpoint.json` if it still names this server.
pub(crate) fn remove_advertisement(path: &Path, addr: SocketAddr) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Advertisement>(&t).ok())
        .is_some_and(|a| a.endpoint_url == format!("http://{addr}"));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

pub(crate) async fn find_running(data_dir: &Path) -> Option<RunningElsewhere> {
    let text = std::fs::read_to_string(data_dir.join(ENDPOINT_FILE)).ok()?;
    let ad: Advertisement = serde_json::from_str(&text).ok()?;
    let credentials = creds::read_credentials(data_dir).ok()??;
    let authority = ad.endpoint_url.strip_prefix("http://")?.to_string();
    let ok = tokio::time::timeout(Duration::from_secs(2), health_check(&authority))
        .await
        .ok()?;
    if !ok {
        return None;
    }
    Some(RunningElsewhere {
        endpoint_url: ad.endpoint_url,
        region: ad.region,
        credentials,
        api_key: creds::read_api_key(data_dir).ok().flatten(),
    })
}

/// GETs the health path over a fresh HTTP/1.1 connection; true on a 200 from a local Bedrock.
async fn health_check(authority: &str) -> bool {
    let Ok(stream) = tokio::net::TcpStream::connect(authority).await else {
        return false;
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Body>(io).await else {
        return false;
    };
    let conn_task = tokio::spawn(conn);
    let Ok(req) = Request::get(HEALTH_PATH)
        .header(http::header::HOST, authority)
        .body(Body::empty())
    else {
        return false;
    };
    let ok = match sender.send_request(req).await {
        Ok(resp) if resp.status() == StatusCode::OK => match resp.into_body().collect().await {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b.to_bytes())
                .ok()
                .is_some_and(|v| v["service"] == "cmi-local-bedrock"),
            Err(_) => false,
        },
        _ => false,
    };
    conn_task.abort();
    ok
}
