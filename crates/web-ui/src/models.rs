//! The models view's data: the registry's entries for the region with the imported models listed live, and the
//! handlers that add, edit, remove and export user entries (through `model-registry`, as `cmi models` does).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, header};
use model_registry::{Registry, Source};
use serde::{Deserialize, Serialize};

use crate::state::State as App;
use crate::{Error, ImportedModel};

/// Where a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RowSource {
    /// The built-in foundation-model catalogue.
    Builtin,
    /// The user's registry file.
    User,
    /// ListImportedModels, with no registry entry.
    Imported,
}

/// One row of the models table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The name to call it by.
    pub name: String,
    /// Where it comes from.
    pub source: RowSource,
    /// Found by ListImportedModels now.
    pub live: bool,
    /// The model ID sent in the region (an ARN for imported models).
    pub model_id: String,
    /// The provider.
    pub provider: String,
    /// `instructSupported`: the model serves Converse (else InvokeModel with its own template).
    pub converse: bool,
    /// The model may be given tools.
    pub tool_use: bool,
    /// ConverseStream works with tools.
    pub streams_with_tools: bool,
    /// Context length, when known.
    pub context: Option<u32>,
    /// `maxTokensLimit`.
    pub max_tokens: u32,
}

/// The table: built-in models served in `region`, every user entry, then imported models without an entry.
pub fn rows(reg: &Registry, region: &str, imported: &[ImportedModel]) -> Vec<Row> {
    let mut user = vec![];
    let mut builtin = vec![];
    for e in reg.entries() {
        let source = match reg.source_of(e) {
            Source::Builtin => RowSource::Builtin,
            Source::User => RowSource::User,
        };
        let model_id = match (source, e.model_id_for_region(region)) {
            (_, Some(id)) => id,
            (RowSource::User, None) => e.base_id.clone(),
            _ => continue,
        };
        let row = Row {
            name: e.name.clone(),
            source,
            live: imported.iter().any(|m| m.arn == e.base_id),
            model_id,
            provider: e.provider.clone(),
            converse: e.uses_converse(),
            tool_use: e.tool_use,
            streams_with_tools: e.streams_with_tools(),
            context: e.context_length,
            max_tokens: e.max_tokens_limit,
        };
        match source {
            RowSource::User => user.push(row),
            _ => builtin.push(row),
        }
    }
    // The newest user entry first (the registry keeps them in the order they were added).
    user.reverse();
    let unregistered = imported
        .iter()
        .filter(|m| reg.entries().all(|e| e.base_id != m.arn))
        .map(|m| Row {
            name: m.name.clone(),
            source: RowSource::Imported,
            live: true,
            model_id: m.arn.clone(),
            provider: "custom".into(),
            converse: m.instruct_supported.unwrap_or(true),
            tool_use: true,
            streams_with_tools: false,
            context: None,
            max_tokens: model_registry::ModelEntry::new("", "", "").max_tokens_limit,
        });
    user.into_iter().chain(unregistered).chain(builtin).collect()
}

/// An entry for an imported model that has none, as the editor offers it (the defaults `cmi models sync` uses).
pub fn entry_for(m: &ImportedModel, region: &str) -> model_registry::ModelEntry {
    let mut e = model_registry::ModelEntry::new(m.arn.clone(), m.name.clone(), "custom");
    e.supports_streaming_tool_use = Some(false);
    e.instruct_supported = m.instruct_supported;
    e.architecture = m.architecture.clone();
    e.availability = Some(model_registry::Availability {
        base: vec![region.to_string()],
    });
    e
}

#[derive(Debug, Deserialize)]
pub(crate) struct NameQuery {
    name: String,
}

fn load(app: &App) -> Result<Registry, Error> {
    Ok(Registry::load(&app.host.registry_file())?)
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!(
        "no model named {name:?} in the registry (the models table lists the names)"
    ))
}

/// `GET /ui/api/model?name=`: the entry as the registry's JSON, for the editor.
pub(crate) async fn get(State(app): State<Arc<App>>, Query(q): Query<NameQuery>) -> Result<Response, Error> {
    let reg = load(&app)?;
    let e = match reg.find(&q.name) {
        Some(e) => e.clone(),
        None => {
            let imported = app.host.imported_models().await.map_err(Error::Host)?;
            let m = imported
                .iter()
                .find(|m| m.name == q.name || m.arn == q.name)
                .ok_or_else(|| not_found(&q.name))?;
            entry_for(m, &app.host.region())
        }
    };
    Ok(axum::Json(serde_json::json!({
        "entry": serde_json::to_string_pretty(&e).unwrap_or_default(),
        "user": reg.source_of(&e) == Source::User && reg.find(&q.name).is_some(),
    }))
    .into_response())
}

/// `POST /ui/api/models` with entries as JSON or JSON5 (one or an array): checked and saved, as `cmi models add`.
pub(crate) async fn save(State(app): State<Arc<App>>, body: String) -> Result<Response, Error> {
    let mut reg = load(&app)?;
    let parsed = model_registry::parse_entries(&body, None)?;
    if parsed.has_errors() || parsed.entries.is_empty() {
        return Err(Error::BadRequest(
            if parsed.entries.is_empty() && !parsed.has_errors() {
                "no model entry in the text: expected an object like {baseId: \"…\", name: \"…\", provider: \"…\"}"
                    .into()
            } else {
                parsed.problems.to_string()
            },
        ));
    }
    let names: Vec<String> = parsed.entries.iter().map(|e| e.name.clone()).collect();
    for e in parsed.entries {
        reg.upsert(e)?;
    }
    reg.save()?;
    tracing::info!(?names, "saved model entries from the web UI");
    Ok(axum::Json(serde_json::json!({"saved": names})).into_response())
}

/// `DELETE /ui/api/model?name=`: removes a user entry.
pub(crate) async fn remove(State(app): State<Arc<App>>, Query(q): Query<NameQuery>) -> Result<Response, Error> {
    let mut reg = load(&app)?;
    let e = reg.remove(&q.name)?;
    reg.save()?;
    Ok(axum::Json(serde_json::json!({"removed": e.name})).into_response())
}

/// `GET /ui/api/export?name=`: the Bedrock Engineer `models.ts` entry, exactly as `cmi models export` prints it.
pub(crate) async fn export(State(app): State<Arc<App>>, Query(q): Query<NameQuery>) -> Result<Response, Error> {
    let reg = load(&app)?;
    let e = reg.find(&q.name).ok_or_else(|| not_found(&q.name))?;
    let mut r = model_registry::export::bedrock_engineer(e).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::{RowSource, rows};
    use crate::ImportedModel;

    #[test]
    fn the_table_has_user_then_unregistered_imported_then_builtin_models() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("models.json");
        let mut reg = model_registry::Registry::load(&file).expect("registry");
        let arn = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl";
        let mut e = model_registry::ModelEntry::new(arn, "mine", "custom");
        e.instruct_supported = Some(false);
        e.context_length = Some(8192);
        e.availability = Some(model_registry::Availability {
            base: vec!["us-east-1".into()],
        });
        reg.upsert(e).expect("upsert");
        let other = "arn:aws:bedrock:us-east-1:123456789012:imported-model/zzzzzzzzzzzz";
        let imported = [
            ImportedModel {
                name: "mine".into(),
                arn: arn.into(),
                instruct_supported: Some(false),
                architecture: None,
            },
            ImportedModel {
                name: "elsewhere".into(),
                arn: other.into(),
                instruct_supported: Some(true),
                architecture: None,
            },
        ];
        let r = rows(&reg, "us-east-1", &imported);
        assert_eq!(r[0].name, "mine");
        assert_eq!(r[0].source, RowSource::User);
        assert!(r[0].live && !r[0].converse);
        assert_eq!(r[0].context, Some(8192));
        assert_eq!((r[1].name.as_str(), r[1].source), ("elsewhere", RowSource::Imported));
        assert!(r.len() > 2 && r[2..].iter().all(|x| x.source == RowSource::Builtin));
        // The region filters the built-in models: none is served in a region that does not exist.
        assert!(
            rows(&reg, "xx-nowhere-1", &[])
                .iter()
                .all(|x| x.source == RowSource::User)
        );
    }
}
