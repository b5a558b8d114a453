//! The server's access key pair and its Bedrock API key: generated on first start, stored owner-only in
//! `data_dir/credentials` and `data_dir/api-key`.
//!
//! The credentials file uses the AWS shared-credentials format (`[default]`, `aws_access_key_id = …`), so it also
//! works as `AWS_SHARED_CREDENTIALS_FILE` for the AWS CLI and boto3. The API key is what Bedrock's long-term API
//! keys are: a bearer token (`Authorization: Bearer …`, the AWS SDKs' `AWS_BEARER_TOKEN_BEDROCK`, the OpenAI SDKs'
//! `api_key`), `ABSK` and the base64 of `BedrockAPIKey-ID-at-ACCOUNT:SECRET`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::Rng as _;

use crate::{Credentials, Error};

/// File name of the credentials inside the data directory.
pub(crate) const FILE: &str = "credentials";

/// Reads the credentials stored in `data_dir/credentials`, if any.
pub fn read_credentials(data_dir: &Path) -> Result<Option<Credentials>, Error> {
    let path = data_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    parse(&text).map(Some).ok_or_else(|| Error::Corrupt {
        path,
        message: "expected aws_access_key_id and aws_secret_access_key lines".into(),
    })
}

fn parse(text: &str) -> Option<Credentials> {
    let mut ak = None;
    let mut sk = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k.trim() {
            "aws_access_key_id" => ak = Some(v.trim().to_string()),
            "aws_secret_access_key" => sk = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (ak, sk) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Some(Credentials {
            access_key_id: a,
            secret_access_key: s,
        }),
        _ => None,
    }
}

/// Generates a fresh key pair shaped like AWS's (20-character id, 40-character secret).
pub(crate) fn generate() -> Credentials {
    let mut rng = rand::rng();
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let id: String = (0..16)
        .map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)
        .collect();
    let secret: String = (0..40)
        .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
        .collect();
    Credentials {
        access_key_id: format!("LKIA{id}"),
        secret_access_key: secret,
    }
}

/// The credentials to accept: the configured pair, else the stored pair, else a new one. The result is written to
/// `data_dir/credentials` (mode 0600) whenever the file does not already hold it.
pub(crate) fn resolve(data_dir: &Path, configured: Option<&Credentials>) -> Result<Credentials, Error> {
    let stored = read_credentials(data_dir)?;
    let creds = match (configured, &stored) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => generate(),
    };
    if stored.as_ref() != Some(&creds) {
        write(data_dir, &creds)?;
    }
    Ok(creds)
}

fn write(data_dir: &Path, c: &Credentials) -> Result<(), Error> {
    let body = format!(
        "# Credentials of the local Bedrock (cmi serve). Use them with --endpoint-url.\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        c.access_key_id, c.secret_access_key
    );
    write_private(data_dir, FILE, &body)
}

/// File name of the API key inside the data directory.
pub(crate) const API_KEY_FILE: &str = "api-key";

/// Reads the Bedrock API key stored in `data_dir/api-key`, if any.
pub fn read_api_key(data_dir: &Path) -> Result<Option<String>, Error> {
    let path = data_dir.join(API_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            let key = t.trim();
            if key.starts_with("ABSK") && key.len() > 4 {
                Ok(Some(key.to_string()))
            } else {
                Err(Error::Corrupt {
                    path,
                    message: "expected a Bedrock API key (ABSK…) on its own line".into(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path, source }),
    }
}

/// The API key to accept: the stored one, else a new one (written to `data_dir/api-key`, mode 0600).
pub(crate) fn resolve_api_key(data_dir: &Path) -> Result<String, Error> {
    if let Some(k) = read_api_key(data_dir)? {
        return Ok(k);
    }
    use base64::Engine as _;
    let mut rng = rand::rng();
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
            .collect()
    };
    let raw = format!("BedrockAPIKey-{}-at-{}:{}", pick(4), crate::state::ACCOUNT, pick(40));
    let key = format!("ABSK{}", base64::engine::general_purpose::STANDARD.encode(raw));
    write_private(data_dir, API_KEY_FILE, &format!("{key}\n"))?;
    Ok(key)
}

/// Writes `body` to `data_dir/name`, owner-only, atomically (a temporary file, synced, renamed).
fn write_private(data_dir: &Path, name: &str, body: &str) -> Result<(), Error> {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let io = |p: &PathBuf| {
        let p = p.clone();
        move |source| Error::Io { path: p, source }
    };
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(body.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}
