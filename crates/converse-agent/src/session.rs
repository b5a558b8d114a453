//! Saved chats: one JSON-lines file per session, appended as the turn goes (each message, and each streamed piece
//! of text), so a crash mid-turn loses nothing that was shown and the session resumes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::events::AgentEvent;
use crate::message::{Block, Message, Role};

/// One line of a session file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Record {
    /// First line: what the session is.
    Meta {
        /// Session ID (the file stem).
        id: String,
        /// The model as the user named it.
        model: String,
        /// Seconds since the Unix epoch.
        created: u64,
    },
    /// A message added to the history.
    Message {
        /// The message.
        message: Message,
    },
    /// Streamed text not yet part of a saved message (what a crash would otherwise lose).
    Partial {
        /// The text.
        text: String,
        /// Whether it is reasoning.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reasoning: bool,
    },
    /// The turn was cancelled.
    Cancelled,
    /// The last `messages` messages were taken out of the history (a turn too long for the model on its own).
    Withdrawn {
        /// How many.
        messages: usize,
    },
}

/// A saved session, as [`Session::list`] describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// Its ID (the file stem).
    pub id: String,
    /// The model it was started with.
    pub model: String,
    /// When the file last changed.
    pub modified: std::time::SystemTime,
    /// The first question, cut to 80 characters.
    pub title: String,
    /// Messages saved (before withdrawals).
    pub messages: usize,
}

/// An open session.
#[derive(Debug)]
pub struct Session {
    path: PathBuf,
    /// The session ID.
    pub id: String,
    /// The model it was started with.
    pub model: String,
    /// The history, replayed from the file.
    pub messages: Vec<Message>,
    file: std::fs::File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Session {
        path: path.to_path_buf(),
        source,
    }
}

impl Session {
    /// Starts a new session file in `dir`.
    pub fn create(dir: &Path, model: &str) -> Result<Session, Error> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let id = format!("{created}-{:04x}", rand::random::<u16>());
        let path = dir.join(format!("{id}.jsonl"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut s = Session {
            path,
            id: id.clone(),
            model: model.to_string(),
            messages: vec![],
            file,
        };
        s.write(
            &Record::Meta {
                id,
                model: model.to_string(),
                created,
            },
            true,
        )?;
        Ok(s)
    }

    /// Opens a session file and replays it. Streamed text after the last saved message (a crash or Ctrl-C mid-turn)
    /// becomes an assistant message marked as interrupted.
    pub fn open(path: &Path) -> Result<Session, Error> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut model = String::new();
        let mut messages = vec![];
        let mut partial = String::new();
        let mut partial_reasoning = String::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec: Record = match serde_json::from_str(line) {
                Ok(r) => r,
                // A torn last line (the process died mid-write) is expected after a crash; anything else is not.
                Err(_) if i + 1 == text.lines().count() => break,
                Err(e) => {
                    return Err(Error::SessionFormat {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message: e.to_string(),
                    });
                }
            };
            match rec {
                Record::Meta { id: i, model: m, .. } => {
                    id = i;
                    model = m;
                }
                Record::Message { message } => {
                    partial.clear();
                    partial_reasoning.clear();
                    messages.push(message);
                }
                Record::Partial { text, reasoning } => {
                    if reasoning {
                        partial_reasoning.push_str(&text)
                    } else {
                        partial.push_str(&text)
                    }
                }
                Record::Cancelled => {}
                Record::Withdrawn { messages: n } => {
                    partial.clear();
                    partial_reasoning.clear();
                    messages.truncate(messages.len().saturating_sub(n));
                }
            }
        }
        if !partial.is_empty() || !partial_reasoning.is_empty() {
            let mut content = vec![];
            if !partial_reasoning.is_empty() {
                content.push(Block::ReasoningContent {
                    text: partial_reasoning,
                    signature: None,
                });
            }
            content.push(Block::Text(format!("{partial}\n[interrupted]")));
            messages.push(Message {
                role: Role::Assistant,
                content,
            });
        }
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io(path))?;
        Ok(Session {
            path: path.to_path_buf(),
            id,
            model,
            messages,
            file,
        })
    }

    /// Opens a session to go on with it: replays it as [`Session::open`] does, and saves the interrupted answer it
    /// found after the last saved message (a cancelled or crashed turn) as a message, so that it stays in the history
    /// once later turns are saved after it. `cmi chat --resume` and the web chat both resume this way.
    pub fn resume(path: &Path) -> Result<Session, Error> {
        let mut session = Session::open(path)?;
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let saved = text
            .lines()
            .fold(0usize, |n, l| match serde_json::from_str::<Record>(l) {
                Ok(Record::Message { .. }) => n + 1,
                Ok(Record::Withdrawn { messages }) => n.saturating_sub(messages),
                _ => n,
            });
        if session.messages.len() > saved
            && let Some(interrupted) = session.messages.pop()
        {
            session.record(&AgentEvent::Message(interrupted))?;
        }
        Ok(session)
    }

    /// The sessions in `dir`, most recently modified first: each one's ID, model, modification time and first
    /// question (a title for a list). Files that cannot be read are left out.
    pub fn list(dir: &Path) -> Result<Vec<SessionInfo>, Error> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut out = vec![];
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "jsonl") {
                continue;
            }
            let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let mut info = SessionInfo {
                id: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                model: String::new(),
                modified,
                title: String::new(),
                messages: 0,
            };
            for line in text.lines() {
                match serde_json::from_str::<Record>(line) {
                    Ok(Record::Meta { model, .. }) => info.model = model,
                    Ok(Record::Message { message }) => {
                        info.messages += 1;
                        if info.title.is_empty() && message.role == Role::User {
                            info.title = message.text().chars().take(80).collect();
                        }
                    }
                    _ => {}
                }
            }
            out.push(info);
        }
        out.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    /// The most recently modified session in `dir`.
    pub fn latest(dir: &Path) -> Result<Option<PathBuf>, Error> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "jsonl")
                && let Ok(m) = e.metadata().and_then(|m| m.modified())
                && best.as_ref().is_none_or(|(t, _)| m > *t)
            {
                best = Some((m, p));
            }
        }
        Ok(best.map(|b| b.1))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records what matters of an agent event: messages (synced to disk) and streamed text (flushed).
    pub fn record(&mut self, ev: &AgentEvent) -> Result<(), Error> {
        match ev {
            AgentEvent::Message(m) => {
                self.messages.push(m.clone());
                self.write(&Record::Message { message: m.clone() }, true)
            }
            AgentEvent::Text(t) => self.write(
                &Record::Partial {
                    text: t.clone(),
                    reasoning: false,
                },
                false,
            ),
            AgentEvent::Reasoning(t) => self.write(
                &Record::Partial {
                    text: t.clone(),
                    reasoning: true,
                },
                false,
            ),
            AgentEvent::Withdrawn { messages } => {
                self.messages.truncate(self.messages.len().saturating_sub(*messages));
                self.write(&Record::Withdrawn { messages: *messages }, true)
            }
            _ => Ok(()),
        }
    }

    /// Notes a cancelled turn.
    pub fn cancelled(&mut self) -> Result<(), Error> {
        self.write(&Record::Cancelled, true)
    }

    fn write(&mut self, rec: &Record, sync: bool) -> Result<(), Error> {
        // Records are plain data; serialising them cannot fail.
        let mut line = serde_json::to_string(rec).expect("session records serialise");
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(io(&self.path))?;
        if sync {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        Ok(())
    }
}
