//! The server's state (import jobs and imported models) in SQLite, every change in one transaction.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::Error;

/// One import job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) model_name: String,
    /// Id the imported model gets when the job completes.
    pub(crate) model_id: String,
    pub(crate) model_arn: String,
    pub(crate) role_arn: String,
    pub(crate) s3_uri: String,
    pub(crate) status: String,
    pub(crate) failure_message: Option<String>,
    pub(crate) creation_time: String,
    pub(crate) last_modified_time: String,
    pub(crate) end_time: Option<String>,
    pub(crate) client_token: Option<String>,
    /// The request body as received (tags, VPC and KMS settings are echoed from it).
    pub(crate) request: String,
}

/// One imported model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) job_name: String,
    pub(crate) job_arn: String,
    pub(crate) s3_uri: String,
    pub(crate) creation_time: String,
    pub(crate) architecture: String,
    pub(crate) instruct_supported: bool,
    pub(crate) converse_tools: bool,
    pub(crate) custom_model_units: i64,
    /// The model folder under the data directory.
    pub(crate) dir: String,
    /// Whether ConverseStream accepts requests with tools.
    pub(crate) stream_tools: bool,
    /// The model's `cmi:quantize` import tag (`q8_0`, `q4k`, `q4_0`, `none`), if it has one.
    pub(crate) quantize: Option<String>,
}

/// Outcome of inserting a job.
#[derive(Debug)]
pub(crate) enum Insert {
    Created,
    /// Same `clientRequestToken` as an earlier job: its ARN.
    Existing(String),
    /// The named thing already exists.
    Conflict(String),
}

pub(crate) struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, arn TEXT NOT NULL UNIQUE, model_name TEXT NOT NULL,
  model_id TEXT NOT NULL, model_arn TEXT NOT NULL, role_arn TEXT NOT NULL, s3_uri TEXT NOT NULL, status TEXT NOT NULL,
  failure_message TEXT, creation_time TEXT NOT NULL, last_modified_time TEXT NOT NULL, end_time TEXT,
  client_token TEXT UNIQUE, request TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, arn TEXT NOT NULL UNIQUE, job_name TEXT NOT NULL, job_arn TEXT NOT NULL,
  s3_uri TEXT NOT NULL, creation_time TEXT NOT NULL, architecture TEXT NOT NULL, instruct_supported INTEGER NOT NULL,
  converse_tools INTEGER NOT NULL, custom_model_units INTEGER NOT NULL, dir TEXT NOT NULL, stream_tools INTEGER NOT NULL,
  quantize TEXT);
";

/// Columns added since the first schema, for databases created before them (`ALTER TABLE` when missing).
const ADDED_COLUMNS: [(&str, &str, &str); 1] = [("models", "quantize", "TEXT")];

const JOB_COLS: &str = "id, name, arn, model_name, model_id, model_arn, role_arn, s3_uri, status, failure_message, \
    creation_time, last_modified_time, end_time, client_token, request";
const MODEL_COLS: &str = "id, name, arn, job_name, job_arn, s3_uri, creation_time, architecture, instruct_supported, \
    converse_tools, custom_model_units, dir, stream_tools, quantize";

fn job_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        arn: r.get(2)?,
        model_name: r.get(3)?,
        model_id: r.get(4)?,
        model_arn: r.get(5)?,
        role_arn: r.get(6)?,
        s3_uri: r.get(7)?,
        status: r.get(8)?,
        failure_message: r.get(9)?,
        creation_time: r.get(10)?,
        last_modified_time: r.get(11)?,
        end_time: r.get(12)?,
        client_token: r.get(13)?,
        request: r.get(14)?,
    })
}

fn model_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelRow> {
    Ok(ModelRow {
        id: r.get(0)?,
        name: r.get(1)?,
        arn: r.get(2)?,
        job_name: r.get(3)?,
        job_arn: r.get(4)?,
        s3_uri: r.get(5)?,
        creation_time: r.get(6)?,
        architecture: r.get(7)?,
        instruct_supported: r.get(8)?,
        converse_tools: r.get(9)?,
        custom_model_units: r.get(10)?,
        dir: r.get(11)?,
        stream_tools: r.get(12)?,
        quantize: r.get(13)?,
    })
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, Error> {
        let err = |source| Error::Db {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        for (table, column, ty) in ADDED_COLUMNS {
            let present: bool = conn
                .query_row(
                    &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?
                > 0;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .map_err(err)?;
            }
        }
        Ok(Db {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        // A poisoned lock only means another request panicked mid-call; SQLite itself stays consistent.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|source| Error::Db {
            path: self.path.clone(),
            source,
        })
    }

    pub(crate) fn insert_job(&self, job: &JobRow) -> Result<Insert, Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            if let Some(token) = &job.client_token {
                let existing: Option<String> = tx
                    .query_row("SELECT arn FROM jobs WHERE client_token = ?1", [token], |r| r.get(0))
                    .optional()?;
                if let Some(arn) = existing {
                    return Ok(Insert::Existing(arn));
                }
            }
            let n: i64 = tx.query_row("SELECT count(*) FROM jobs WHERE name = ?1", [&job.name], |r| r.get(0))?;
            if n > 0 {
                return Ok(Insert::Conflict(format!(
                    "A model import job with the name {} already exists.",
                    job.name
                )));
            }
            let n: i64 = tx.query_row("SELECT count(*) FROM models WHERE name = ?1", [&job.model_name], |r| {
                r.get(0)
            })?;
            let m: i64 = tx.query_row(
                "SELECT count(*) FROM jobs WHERE model_name = ?1 AND status = 'InProgress'",
                [&job.model_name],
                |r| r.get(0),
            )?;
            if n + m > 0 {
                return Ok(Insert::Conflict(format!(
                    "An imported model with the name {} already exists or is being imported.",
                    job.model_name
                )));
            }
            tx.execute(
                &format!("INSERT INTO jobs ({JOB_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)"),
                params![
                    job.id,
                    job.name,
                    job.arn,
                    job.model_name,
                    job.model_id,
                    job.model_arn,
                    job.role_arn,
                    job.s3_uri,
                    job.status,
                    job.failure_message,
                    job.creation_time,
                    job.last_modified_time,
                    job.end_time,
                    job.client_token,
                    job.request
                ],
            )?;
            tx.commit()?;
            Ok(Insert::Created)
        })
    }

    /// A job by ARN, name or id.
    pub(crate) fn job(&self, ident: &str) -> Result<Option<JobRow>, Error> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE arn = ?1 OR name = ?1 OR id = ?1 LIMIT 1"),
                [ident],
                job_from,
            )
            .optional()
        })
    }

    pub(crate) fn jobs(&self) -> Result<Vec<JobRow>, Error> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {JOB_COLS} FROM jobs ORDER BY creation_time, id"))?;
            st.query_map([], job_from)?.collect()
        })
    }

    /// Marks a job Completed and registers its model, atomically.
    pub(crate) fn complete_job(&self, job_id: &str, model: &ModelRow, now: &str) -> Result<(), Error> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO models ({MODEL_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
                ),
                params![
                    model.id,
                    model.name,
                    model.arn,
                    model.job_name,
                    model.job_arn,
                    model.s3_uri,
                    model.creation_time,
                    model.architecture,
                    model.instruct_supported,
                    model.converse_tools,
                    model.custom_model_units,
                    model.dir,
                    model.stream_tools,
                    model.quantize
                ],
            )?;
            tx.execute(
                "UPDATE jobs SET status = 'Completed', last_modified_time = ?2, end_time = ?2 WHERE id = ?1",
                params![job_id, now],
            )?;
            tx.commit()
        })
    }

    pub(crate) fn fail_job(&self, job_id: &str, message: &str, now: &str) -> Result<(), Error> {
        self.with(|c| {
            c.execute(
                "UPDATE jobs SET status = 'Failed', failure_message = ?2, last_modified_time = ?3, end_time = ?3 WHERE id = ?1",
                params![job_id, message, now],
            )
            .map(|_| ())
        })
    }

    /// A model by ARN, name or id.
    pub(crate) fn model(&self, ident: &str) -> Result<Option<ModelRow>, Error> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {MODEL_COLS} FROM models WHERE arn = ?1 OR name = ?1 OR id = ?1 LIMIT 1"),
                [ident],
                model_from,
            )
            .optional()
        })
    }

    pub(crate) fn models(&self) -> Result<Vec<ModelRow>, Error> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {MODEL_COLS} FROM models ORDER BY creation_time, id"))?;
            st.query_map([], model_from)?.collect()
        })
    }

    pub(crate) fn delete_model(&self, id: &str) -> Result<bool, Error> {
        self.with(|c| c.execute("DELETE FROM models WHERE id = ?1", [id]).map(|n| n > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_a_column_was_added_gains_it_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.sqlite3");
        {
            // The models table as the first schema wrote it, with one model.
            let conn = Connection::open(&path).expect("open");
            let old = SCHEMA.replace(",\n  quantize TEXT);", ");");
            assert_ne!(old, SCHEMA);
            conn.execute_batch(&old).expect("old schema");
            conn.execute(
                "INSERT INTO models VALUES ('m1','old','arn:m1','j','arn:j','s3://b/p/','t','LlamaForCausalLM',1,1,1,'/d',1)",
                [],
            )
            .expect("old row");
        }
        let db = Db::open(&path).expect("migrates");
        let m = db.model("old").expect("query").expect("the old model");
        assert_eq!((m.name.as_str(), m.quantize), ("old", None));
        // Opening again is a no-op.
        drop(db);
        Db::open(&path).expect("opens again");
    }
}
