//! The route table and the page: server-rendered HTML (the models table included) in the chosen language, the
//! embedded script and style sheet, everything behind the gate.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State as Extract};
use axum::response::{Html, IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, header};

use crate::chat::Chats;
use crate::i18n::Lang;
use crate::models::{Row, RowSource};
use crate::state::State;
use crate::{Gate, chat, gate, import, models};

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON_SVG: &str = include_str!("../assets/icon.svg");
const LANG_COOKIE: &str = "cmi_lang";

/// Every route, behind the gate.
pub(crate) fn router(state: Arc<State>, chats: Arc<Chats>, gate: Arc<Gate>) -> Router {
    let chat_routes = Router::new()
        .route("/ui/api/sessions", get(chat::sessions))
        .route("/ui/api/session", get(chat::session))
        .route("/ui/api/chat", post(chat::turn))
        .route("/ui/api/cancel", post(chat::cancel))
        .route("/ui/api/approve", post(chat::approve))
        .with_state(chats);
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/assets/icon.svg",
            get(|| async { asset(ICON_SVG, "image/svg+xml") }),
        )
        .route("/ui/api/models", post(models::save))
        .route("/ui/api/model", get(models::get).delete(models::remove))
        .route("/ui/api/export", get(models::export))
        .route("/ui/api/import", post(import::run))
        .with_state(state)
        .merge(chat_routes)
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "no such page\n") })
        .layer(axum::middleware::from_fn_with_state(gate, gate::middleware))
        .layer(axum::middleware::map_response(|mut r: Response| async move {
            let h = r.headers_mut();
            h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            h.insert("x-frame-options", HeaderValue::from_static("DENY"));
            h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            r
        }))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// HTML-escapes text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON inside a `<script>` element: `<` escaped so the text cannot close the element.
fn script_json(s: &str) -> String {
    s.replace('<', "\\u003c")
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
}

/// The language: `?lang=` (remembered in a cookie), else the cookie, else `Accept-Language`.
fn choose_lang(q: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(l) = q.lang.as_deref().and_then(Lang::parse) {
        return (l, true);
    }
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == LANG_COOKIE)
        .and_then(|(_, v)| Lang::parse(v));
    if let Some(l) = from_cookie {
        return (l, false);
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (Lang::from_accept_language(accept), false)
}

async fn index(Extract(app): Extract<Arc<State>>, Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let (lang, remember) = choose_lang(&q, &headers);
    let region = app.host.region();
    let (imported, imported_error) = match app.host.imported_models().await {
        Ok(m) => (m, None),
        Err(e) => (vec![], Some(e)),
    };
    let (rows, registry_error) = match model_registry::Registry::load(&app.host.registry_file()) {
        Ok(reg) => (models::rows(&reg, &region, &imported), None),
        Err(e) => (vec![], Some(e.to_string())),
    };
    let html = render(
        lang,
        &region,
        &app.host.target(),
        &rows,
        imported_error.as_deref(),
        registry_error.as_deref(),
    );
    let mut r = Html(html).into_response();
    if remember
        && let Ok(v) = HeaderValue::from_str(&format!("{LANG_COOKIE}={}; Path=/ui; SameSite=Strict", lang.code()))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn yes_no(lang: Lang, v: bool) -> String {
    format!(
        "<span class=\"pill {}\">{}</span>",
        if v { "yes" } else { "no" },
        lang.t(if v { "val.yes" } else { "val.no" })
    )
}

/// The models table's body.
fn table_rows(lang: Lang, rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let (src_class, src) = match r.source {
            RowSource::Builtin => ("builtin", lang.t("src.builtin")),
            RowSource::User => ("user", lang.t("src.user")),
            RowSource::Imported => ("imported", lang.t("src.imported")),
        };
        let live = if r.live {
            format!(" <span class=\"badge live\">{}</span>", lang.t("src.live"))
        } else {
            String::new()
        };
        let unregistered = if r.source == RowSource::Imported {
            format!(" <span class=\"badge\">{}</span>", lang.t("src.unregistered"))
        } else {
            String::new()
        };
        let name = esc(&r.name);
        let mut actions = String::new();
        match r.source {
            RowSource::User => {
                let _ = write!(
                    actions,
                    "<button class=\"ghost\" data-act=\"export\" data-name=\"{name}\">{}</button>\
                     <button class=\"ghost\" data-act=\"edit\" data-name=\"{name}\">{}</button>\
                     <button class=\"ghost danger\" data-act=\"remove\" data-name=\"{name}\">{}</button>",
                    lang.t("btn.export"),
                    lang.t("btn.edit"),
                    lang.t("btn.remove")
                );
            }
            RowSource::Builtin => {
                let _ = write!(
                    actions,
                    "<button class=\"ghost\" data-act=\"export\" data-name=\"{name}\">{}</button>",
                    lang.t("btn.export")
                );
            }
            RowSource::Imported => {
                let _ = write!(
                    actions,
                    "<button class=\"ghost\" data-act=\"edit\" data-name=\"{name}\">{}</button>",
                    lang.t("btn.add_registry")
                );
            }
        }
        let _ = writeln!(
            out,
            "<tr data-search=\"{search}\"><td class=\"name\">{name}{live}{unregistered}</td>\
             <td><span class=\"src {src_class}\">{src}</span></td><td class=\"mono id\" title=\"{id}\">{id}</td>\
             <td>{provider}</td><td>{converse}</td><td>{tools}</td><td>{stream}</td>\
             <td class=\"num\">{context}</td><td class=\"num\">{max}</td><td class=\"actions\">{actions}</td></tr>",
            search = esc(&format!("{} {} {}", r.name, r.provider, r.model_id).to_lowercase()),
            id = esc(&r.model_id),
            provider = esc(&r.provider),
            converse = yes_no(lang, r.converse),
            tools = yes_no(lang, r.tool_use),
            stream = yes_no(lang, r.streams_with_tools),
            context = r.context.map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
            max = r.max_tokens,
        );
    }
    out
}

/// The whole page.
fn render(
    lang: Lang,
    region: &str,
    target: &str,
    rows: &[Row],
    imported_error: Option<&str>,
    registry_error: Option<&str>,
) -> String {
    let t = |k: &str| esc(lang.t(k));
    let mut switch = String::new();
    for l in Lang::ALL {
        let _ = write!(
            switch,
            "<a href=\"?lang={code}\" data-lang=\"{code}\" class=\"{cls}\" lang=\"{code}\">{name}</a>",
            code = l.code(),
            cls = if l == lang { "on" } else { "" },
            name = l.name()
        );
    }
    let mut notices = String::new();
    if let Some(e) = imported_error {
        let _ = write!(
            notices,
            "<p class=\"notice warn\">{}</p>",
            esc(&lang.fmt("models.imported_error", &[("error", e)]))
        );
    }
    if let Some(e) = registry_error {
        let _ = write!(notices, "<p class=\"notice error\">{}</p>", esc(e));
    }
    // The chat's model list: what can be chatted with, the user's models first.
    let mut options = String::new();
    for r in rows
        .iter()
        .filter(|r| r.source != RowSource::Builtin || !r.model_id.is_empty())
    {
        let _ = write!(options, "<option value=\"{n}\">{n}</option>", n = esc(&r.name));
    }
    let boot = serde_json::json!({"lang": lang.code(), "region": region, "strings": serde_json::from_str::<serde_json::Value>(&lang.json()).unwrap_or_default()});
    format!(
        r##"<!doctype html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<link rel="icon" href="/ui/assets/icon.svg">
<link rel="stylesheet" href="/ui/assets/app.css">
</head>
<body>
<header class="top">
  <div class="brand"><img src="/ui/assets/icon.svg" alt="" width="28" height="28"><div><strong>cmi</strong><span>{tagline}</span></div></div>
  <nav class="tabs" role="tablist">
    <button role="tab" data-view="models" id="tab-models">{nav_models}</button>
    <button role="tab" data-view="chat" id="tab-chat">{nav_chat}</button>
    <button role="tab" data-view="import" id="tab-import">{nav_import}</button>
  </nav>
  <div class="meta">
    <span class="target" title="{target_label}">{target}</span>
    <span class="lang-switch" aria-label="{lang_label}">{switch}</span>
  </div>
</header>
<main>
<section id="view-models" class="view">
  <div class="head">
    <div><h1>{models_heading}</h1><p class="intro">{models_intro}</p></div>
    <div class="tools"><input type="search" id="model-filter" placeholder="{filter}"><button id="model-add" class="primary">{add}</button></div>
  </div>
  {notices}
  <div class="table-wrap">
  <table id="models-table">
    <thead><tr><th>{c_name}</th><th>{c_source}</th><th>{c_id}</th><th>{c_provider}</th><th>{c_converse}</th><th>{c_tools}</th><th>{c_stream}</th><th class="num">{c_context}</th><th class="num">{c_max}</th><th>{c_actions}</th></tr></thead>
    <tbody>
{rows}    </tbody>
  </table>
  </div>
  <p class="count" id="model-count">{count}</p>
</section>

<section id="view-chat" class="view">
  <aside class="sidebar">
    <label class="field"><span>{chat_model}</span><select id="chat-model">{options}</select></label>
    <label class="field"><span>{chat_tool_choice}</span><select id="chat-tool-choice"><option value="">{chat_tool_auto}</option><option value="any">{chat_tool_any}</option><option value="read_file">read_file</option><option value="list_files">list_files</option><option value="write_file">write_file</option><option value="run_command">run_command</option></select></label>
    <label class="field"><span>{chat_max_tokens}</span><input id="chat-max-tokens" type="number" min="1" placeholder="{chat_max_tokens_ph}"></label>
    <button id="chat-new" class="primary wide">{chat_new}</button>
    <h2>{chat_sessions}</h2>
    <ul id="session-list" class="sessions"></ul>
  </aside>
  <div class="conversation">
    <div class="session-bar"><span id="session-label"></span><span id="chat-status" class="status" aria-live="polite"></span></div>
    <div id="messages" class="messages">
      <div class="empty" id="chat-empty"><h2>{chat_empty_title}</h2><p>{chat_empty}</p></div>
    </div>
    <form id="composer" class="composer">
      <textarea id="chat-input" rows="2" placeholder="{chat_ph}"></textarea>
      <div class="buttons"><button type="button" id="chat-stop" class="danger" hidden>{chat_stop}</button><button type="submit" id="chat-send" class="primary">{chat_send}</button></div>
    </form>
  </div>
</section>

<section id="view-import" class="view">
  <div class="head"><div><h1>{import_heading}</h1><p class="intro">{import_intro}</p></div></div>
  <form id="import-form" class="card import-form">
    <label class="field grow"><span>{import_source}</span><input id="import-source" placeholder="{import_source_ph}" autocomplete="off"></label>
    <label class="field"><span>{import_name}</span><input id="import-name" placeholder="{import_name_ph}" autocomplete="off"></label>
    <div class="buttons"><button type="button" id="import-check" class="ghost">{import_check}</button><button type="submit" id="import-run" class="primary">{import_run}</button></div>
    <details class="aws"><summary>{import_aws}</summary>
      <div class="aws-fields">
        <label class="field"><span>{import_bucket}</span><input id="import-bucket" autocomplete="off"></label>
        <label class="field grow"><span>{import_role}</span><input id="import-role" placeholder="arn:aws:iam::123456789012:role/…" autocomplete="off"></label>
        <label class="check"><input type="checkbox" id="import-create-bucket"> {import_create_bucket}</label>
      </div>
    </details>
  </form>
  <div id="import-steps" class="steps"></div>
</section>
</main>

<dialog id="dialog">
  <form method="dialog" class="dialog">
    <h2 id="dialog-title"></h2>
    <p id="dialog-hint" class="hint"></p>
    <textarea id="dialog-text" spellcheck="false"></textarea>
    <p id="dialog-error" class="notice error" hidden></p>
    <div class="buttons"><button value="close" class="ghost" id="dialog-close">{close}</button><button type="button" id="dialog-copy" class="ghost">{copy}</button><button type="button" id="dialog-save" class="primary">{save}</button></div>
  </form>
</dialog>
<script id="boot" type="application/json">{boot}</script>
<script src="/ui/assets/app.js"></script>
</body>
</html>
"##,
        code = lang.code(),
        title = t("app.title"),
        tagline = t("app.tagline"),
        nav_models = t("nav.models"),
        nav_chat = t("nav.chat"),
        nav_import = t("nav.import"),
        target_label = t("target.label"),
        target = esc(target),
        lang_label = t("lang.label"),
        models_heading = t("models.heading"),
        models_intro = esc(&lang.fmt("models.intro", &[("region", region)])),
        filter = t("models.filter"),
        add = t("btn.add"),
        c_name = t("col.name"),
        c_source = t("col.source"),
        c_id = t("col.model_id"),
        c_provider = t("col.provider"),
        c_converse = t("col.converse"),
        c_tools = t("col.tools"),
        c_stream = t("col.stream_tools"),
        c_context = t("col.context"),
        c_max = t("col.max_tokens"),
        c_actions = t("col.actions"),
        rows = table_rows(lang, rows),
        count = esc(&lang.fmt("models.count", &[("n", &rows.len().to_string())])),
        chat_model = t("chat.model"),
        chat_new = t("chat.new"),
        chat_tool_choice = t("chat.tool_choice"),
        chat_tool_auto = t("chat.tool_auto"),
        chat_tool_any = t("chat.tool_any"),
        chat_max_tokens = t("chat.max_tokens"),
        chat_max_tokens_ph = t("chat.max_tokens_ph"),
        chat_sessions = t("chat.sessions"),
        chat_empty_title = t("chat.empty_title"),
        chat_empty = t("chat.empty"),
        chat_ph = t("chat.placeholder"),
        chat_stop = t("chat.stop"),
        chat_send = t("chat.send"),
        import_heading = t("import.heading"),
        import_intro = t("import.intro"),
        import_source = t("import.source"),
        import_source_ph = t("import.source_ph"),
        import_name = t("import.name"),
        import_name_ph = t("import.name_ph"),
        import_check = t("import.check"),
        import_run = t("import.run"),
        import_aws = t("import.aws"),
        import_bucket = t("import.bucket"),
        import_role = t("import.role"),
        import_create_bucket = t("import.create_bucket"),
        close = t("btn.close"),
        copy = t("btn.copy"),
        save = t("btn.save"),
        boot = script_json(&boot.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::{esc, render, script_json};
    use crate::Lang;
    use crate::models::{Row, RowSource};

    #[test]
    fn the_page_escapes_what_it_shows_and_speaks_the_language() {
        let rows = [Row {
            name: "<b>x</b>".into(),
            source: RowSource::User,
            live: true,
            model_id: "arn:\"q\"".into(),
            provider: "custom".into(),
            converse: true,
            tool_use: true,
            streams_with_tools: false,
            context: Some(2048),
            max_tokens: 512,
        }];
        let html = render(Lang::Ja, "us-east-1", "local <Bedrock>", &rows, None, None);
        assert!(!html.contains("<b>x</b>") && html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("arn:&quot;q&quot;") && html.contains("local &lt;Bedrock&gt;"));
        assert!(html.contains("モデルレジストリ") && html.contains("<html lang=\"ja\">"));
        assert_eq!(esc("a'b"), "a&#39;b");
        assert_eq!(script_json("</script>"), "\\u003c/script>");
    }
}
