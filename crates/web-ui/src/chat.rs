//! The chat on the server: one `converse_agent::Agent` per open session, turns streamed to the page as JSON lines,
//! cancelled from the page, and commands that ask the page before they run. Sessions are the files `cmi chat` writes
//! (`converse_agent::session`), so either can resume the other's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use converse_agent::session::Session;
use converse_agent::tools::Approver;
use converse_agent::{Agent, AgentEvent, Api, Message};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::stream::{self, Lines};
use crate::{Error, Host};

/// An open conversation.
struct Chat {
    agent: Agent,
    history: Vec<Message>,
    session: Session,
    /// Where the running turn's events go (the approver sends its question there).
    sink: Arc<Mutex<Option<Lines>>>,
}

/// Every open conversation, running turn and waiting approval.
pub(crate) struct Chats {
    host: Arc<dyn Host>,
    open: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Chat>>>>,
    turns: Mutex<HashMap<String, oneshot::Sender<()>>>,
    approvals: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A session ID as `Session::create` makes them (`1733650000-1a2b`); anything that could name another file is refused.
fn check_session_id(id: &str) -> Result<(), Error> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid session ID {id:?}: expected the ID of a saved session, letters, digits and `-` (like 1733650000-1a2b)"
        )))
    }
}

fn session_path(host: &dyn Host, id: &str) -> Result<PathBuf, Error> {
    check_session_id(id)?;
    let path = host.sessions_dir().join(format!("{id}.jsonl"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::NotFound(format!(
            "no saved session {id:?} in {}",
            host.sessions_dir().display()
        )))
    }
}

/// Asks the page before a command runs: the question goes out on the turn's stream, the answer comes back through
/// `POST /ui/api/approve`. No page listening (or the turn ended) declines.
fn approver(
    sink: Arc<Mutex<Option<Lines>>>,
    approvals: Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>,
) -> Approver {
    Arc::new(move |command: String| {
        let sink = sink.clone();
        let approvals = approvals.clone();
        Box::pin(async move {
            let Some(lines) = lock(&sink).clone() else {
                return false;
            };
            let id = new_id();
            let (tx, rx) = oneshot::channel();
            lock(&approvals).insert(id.clone(), tx);
            lines.send(json!({"t": "approve", "id": id, "command": command}));
            let run = rx.await.unwrap_or(false);
            lock(&approvals).remove(&id);
            lines.send(json!({"t": "approved", "id": id, "run": run}));
            run
        })
    })
}

impl Chats {
    pub(crate) fn new(host: Arc<dyn Host>) -> Chats {
        Chats {
            host,
            open: Mutex::default(),
            turns: Mutex::default(),
            approvals: Arc::default(),
        }
    }

    /// The open conversation of `session`, or one opened from its file, or a new session on `model`.
    async fn get_or_open(
        &self,
        host: &dyn Host,
        session: Option<&str>,
        model: Option<&str>,
    ) -> Result<Arc<tokio::sync::Mutex<Chat>>, Error> {
        if let Some(id) = session {
            check_session_id(id)?;
            if let Some(c) = lock(&self.open).get(id) {
                return Ok(c.clone());
            }
        }
        let sink = Arc::new(Mutex::new(None));
        let approver = approver(sink.clone(), self.approvals.clone());
        let (session, agent) = match session {
            Some(id) => {
                let s = Session::resume(&session_path(host, id)?)?;
                let model = match model.filter(|m| !m.is_empty()) {
                    Some(m) => m.to_string(),
                    None => s.model.clone(),
                };
                let agent = host.agent(model, approver).await.map_err(Error::Host)?;
                (s, agent)
            }
            None => {
                let model = model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
                    Error::BadRequest("no model given: pick one in the list (a registry name, model ID or ARN)".into())
                })?;
                let agent = host.agent(model.to_string(), approver).await.map_err(Error::Host)?;
                (Session::create(&host.sessions_dir(), model)?, agent)
            }
        };
        let id = session.id.clone();
        let chat = Arc::new(tokio::sync::Mutex::new(Chat {
            agent,
            history: session.messages.clone(),
            session,
            sink,
        }));
        Ok(lock(&self.open).entry(id).or_insert(chat).clone())
    }
}

/// What the page shows of an agent event (`None`: nothing).
pub fn event_json(e: &AgentEvent) -> Option<Value> {
    Some(match e {
        AgentEvent::Request { step, api } => json!({"t": "request", "step": step, "api": match api {
            Api::ConverseStream => "ConverseStream",
            Api::Converse => "Converse",
            Api::InvokeModel => "InvokeModel",
        }}),
        AgentEvent::Text(t) => json!({"t": "text", "v": t}),
        AgentEvent::Reasoning(t) => json!({"t": "reasoning", "v": t}),
        AgentEvent::ToolUse { id, name, input } => json!({"t": "tool_use", "id": id, "name": name, "input": input}),
        AgentEvent::ToolResult {
            id,
            name,
            output,
            is_error,
        } => json!({"t": "tool_result", "id": id, "name": name, "output": output, "is_error": is_error}),
        AgentEvent::WarmingUp {
            elapsed,
            timeout,
            attempt,
        } => json!({"t": "warming", "elapsed": elapsed.as_secs(), "timeout": timeout.as_secs(), "attempt": attempt}),
        AgentEvent::Retrying { code, attempt, delay } => {
            json!({"t": "retrying", "code": code, "attempt": attempt, "delay": delay.as_secs_f64()})
        }
        AgentEvent::SwitchedToNonStreaming { reason } => json!({"t": "nonstreaming", "reason": reason}),
        AgentEvent::TruncatedToolCall { name } => json!({"t": "truncated", "name": name}),
        AgentEvent::ContextTrimmed { left_out } => json!({"t": "trimmed", "n": left_out}),
        AgentEvent::Withdrawn { messages } => json!({"t": "withdrawn", "n": messages}),
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct TurnRequest {
    /// The session to go on with (none: a new one).
    #[serde(default)]
    session: Option<String>,
    /// The model of a new session.
    #[serde(default)]
    model: Option<String>,
    /// The question.
    text: String,
    /// `toolChoice` of the turn's first call: `auto`, `any` or a tool's name (none: the model decides).
    #[serde(default)]
    tool_choice: Option<String>,
    /// `maxTokens` per call (none: the model's limit).
    #[serde(default)]
    max_tokens: Option<u32>,
}

/// `POST /ui/api/chat`: runs one turn; the answer streams as JSON lines (first `turn`, with the IDs to cancel it and
/// resume its session; last `end`, `cancelled` or `error`).
pub(crate) async fn turn(
    State(chats): State<Arc<Chats>>,
    axum::Json(req): axum::Json<TurnRequest>,
) -> Result<Response, Error> {
    if req.text.trim().is_empty() {
        return Err(Error::BadRequest("empty message: type a question first".into()));
    }
    let chat = chats
        .get_or_open(chats.host.as_ref(), req.session.as_deref(), req.model.as_deref())
        .await?;
    let Ok(mut chat) = chat.try_lock_owned() else {
        return Err(Error::BadRequest(
            "a turn is already running in this session: wait for it, or stop it".into(),
        ));
    };
    let choice = req.tool_choice.clone().filter(|c| !c.trim().is_empty());
    if let Some(c) = &choice {
        let names: Vec<&str> = chat.agent.tools().iter().map(|t| t.name()).collect();
        if c != "auto" && c != "any" && !names.contains(&c.as_str()) {
            return Err(Error::BadRequest(format!(
                "unknown tool choice {c:?}: expected auto, any or one of the tools ({})",
                names.join(", ")
            )));
        }
    }
    if req.max_tokens == Some(0) {
        return Err(Error::BadRequest(
            "max tokens 0: expected at least 1, or none for the model's limit".into(),
        ));
    }
    chat.agent.set_first_tool_choice(choice);
    chat.agent.set_max_tokens(req.max_tokens);
    let turn_id = new_id();
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    lock(&chats.turns).insert(turn_id.clone(), cancel_tx);
    let (lines, response) = stream::channel();
    let chats2 = chats.clone();
    tokio::spawn(async move {
        let c = &mut *chat;
        lines
            .send(json!({"t": "turn", "turn": turn_id, "session": c.session.id, "model": c.agent.config().entry.name}));
        *lock(&c.sink) = Some(lines.clone());
        let mut save_error = None;
        let outcome = {
            let session = &mut c.session;
            let out = lines.clone();
            let mut emit = |e: AgentEvent| {
                if let Err(err) = session.record(&e) {
                    save_error.get_or_insert(err);
                }
                if let Some(v) = event_json(&e) {
                    out.send(v);
                }
            };
            let fut = c.agent.run_turn(&mut c.history, Message::user(req.text), &mut emit);
            // A dropped sender (never: it is removed below, after the turn) must not read as a cancel.
            let cancelled = async {
                if cancel_rx.await.is_err() {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                biased;
                _ = cancelled => None,
                r = fut => Some(r),
            }
        };
        *lock(&c.sink) = None;
        lock(&chats2.turns).remove(&turn_id);
        if let Some(e) = save_error {
            lines.send(json!({"t": "error", "message": format!("saving the session: {e}")}));
            return;
        }
        match outcome {
            None => {
                // Go on from what a resume sees: the question, the calls it got to, the text shown so far.
                let resumed = c.session.cancelled().and_then(|()| Session::resume(c.session.path()));
                match resumed {
                    Ok(s) => {
                        c.history = s.messages.clone();
                        c.session = s;
                        lines.send(json!({"t": "cancelled"}));
                    }
                    Err(e) => lines.send(json!({"t": "error", "message": e.to_string()})),
                }
            }
            Some(Ok(o)) => lines.send(json!({
                "t": "end", "stop_reason": o.stop_reason, "steps": o.steps, "empty": o.text.trim().is_empty()
            })),
            Some(Err(e)) => lines.send(json!({"t": "error", "message": e.to_string()})),
        }
    });
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CancelRequest {
    turn: String,
}

/// `POST /ui/api/cancel`: stops a running turn on the server (the session keeps what it got to).
pub(crate) async fn cancel(
    State(chats): State<Arc<Chats>>,
    axum::Json(req): axum::Json<CancelRequest>,
) -> Result<Response, Error> {
    let tx = lock(&chats.turns)
        .remove(&req.turn)
        .ok_or_else(|| Error::NotFound(format!("no running turn {:?} (it has ended already)", req.turn)))?;
    let _ = tx.send(());
    Ok(axum::Json(json!({"cancelled": req.turn})).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApproveRequest {
    id: String,
    run: bool,
}

/// `POST /ui/api/approve`: the answer to a command's question.
pub(crate) async fn approve(
    State(chats): State<Arc<Chats>>,
    axum::Json(req): axum::Json<ApproveRequest>,
) -> Result<Response, Error> {
    let tx = lock(&chats.approvals).remove(&req.id).ok_or_else(|| {
        Error::NotFound(format!(
            "no command waiting for approval with ID {:?} (it was answered, or its turn ended)",
            req.id
        ))
    })?;
    let _ = tx.send(req.run);
    Ok(axum::Json(json!({"id": req.id, "run": req.run})).into_response())
}

/// `GET /ui/api/sessions`: the saved sessions, newest first.
pub(crate) async fn sessions(State(chats): State<Arc<Chats>>) -> Result<Response, Error> {
    let list = Session::list(&chats.host.sessions_dir())?;
    let list: Vec<Value> = list
        .into_iter()
        .take(200)
        .map(|s| {
            let modified = s
                .modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            json!({"id": s.id, "model": s.model, "title": s.title, "messages": s.messages, "modified": modified})
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct SessionQuery {
    id: String,
}

/// `GET /ui/api/session?id=`: a saved session's messages (Converse's JSON shape), to show before going on with it.
pub(crate) async fn session(State(chats): State<Arc<Chats>>, Query(q): Query<SessionQuery>) -> Result<Response, Error> {
    let s = Session::open(&session_path(chats.host.as_ref(), &q.id)?)?;
    Ok(axum::Json(json!({"id": s.id, "model": s.model, "messages": s.messages})).into_response())
}

#[cfg(test)]
mod tests {
    use super::{check_session_id, event_json};
    use converse_agent::AgentEvent;

    #[test]
    fn session_ids_cannot_name_other_files() {
        assert!(check_session_id("1733650000-1a2b").is_ok());
        for bad in ["", "../x", "a/b", "x.jsonl", "a b"] {
            let e = check_session_id(bad).expect_err(bad).to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("expected"), "{e}");
        }
    }

    #[test]
    fn events_become_lines_the_page_reads() {
        let v = event_json(&AgentEvent::ContextTrimmed { left_out: 4 }).expect("shown");
        assert_eq!(v, serde_json::json!({"t": "trimmed", "n": 4}));
        let v = event_json(&AgentEvent::Text("hi".into())).expect("shown");
        assert_eq!(v["v"], "hi");
        assert!(event_json(&AgentEvent::Message(converse_agent::Message::user("q"))).is_none());
    }
}
