// The web chat's script: tabs, the models table's actions, the chat stream, the import stream, a small Markdown
// renderer. Plain JavaScript, no build step; every string comes from the server's table for the page's language.
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
const S = boot.strings;
const $ = (sel, root) => (root || document).querySelector(sel);

function t(key, args) {
  let s = S[key] || key;
  for (const [k, v] of Object.entries(args || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function el(tag, cls, html) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (html !== undefined) e.innerHTML = html;
  return e;
}

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  n = Number(n) || 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + u[i];
}

function mmss(secs) {
  secs = Math.round(secs);
  return Math.floor(secs / 60) + ":" + String(secs % 60).padStart(2, "0");
}

async function api(path, opts) {
  let r;
  try {
    r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  } catch (e) {
    throw new Error(t("error.network", { error: e.message }));
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const j = await r.json(); if (j.error) msg = j.error; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function readLines(resp, onEvent) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) onEvent(JSON.parse(line));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Markdown: HTML is escaped first; then fenced code, headings, lists, quotes, paragraphs, inline code, bold, italics
// and http(s) links.

function inline(s) {
  const codes = [];
  s = s.replace(/`([^`\n]+)`/g, (_, c) => { codes.push(c); return "\u0000" + (codes.length - 1) + "\u0000"; });
  s = s.replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>");
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => "<code>" + codes[Number(i)] + "</code>");
}

function markdown(src) {
  const text = esc(src);
  const parts = text.split(/^```/m);
  let html = "";
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const nl = part.indexOf("\n");
      const lang = nl >= 0 ? part.slice(0, nl).trim() : "";
      const code = nl >= 0 ? part.slice(nl + 1) : "";
      html += '<div class="code"><div class="code-head"><span>' + (lang || "code") + '</span><button type="button" class="copy-code">' +
        esc(t("btn.copy")) + "</button></div><pre><code>" + code.replace(/\n$/, "") + "</code></pre></div>";
      return;
    }
    html += blocks(part);
  });
  return html;
}

function blocks(text) {
  let out = "";
  let list = null;
  let para = [];
  const flushPara = () => { if (para.length) { out += "<p>" + inline(para.join("\n")).replace(/\n/g, "<br>") + "</p>"; para = []; } };
  const flushList = () => { if (list) { out += "<" + list.tag + ">" + list.items.map((x) => "<li>" + inline(x) + "</li>").join("") + "</" + list.tag + ">"; list = null; } };
  for (const line of text.split("\n")) {
    let m;
    if (!line.trim()) { flushPara(); flushList(); continue; }
    if ((m = line.match(/^(#{1,6})\s+(.*)$/))) {
      flushPara(); flushList();
      const n = Math.min(m[1].length + 2, 6);
      out += "<h" + n + ">" + inline(m[2]) + "</h" + n + ">";
    } else if ((m = line.match(/^\s*[-*+]\s+(.*)$/)) || (m = line.match(/^\s*\d+[.)]\s+(.*)$/))) {
      flushPara();
      const tag = /^\s*\d/.test(line) ? "ol" : "ul";
      if (!list || list.tag !== tag) { flushList(); list = { tag, items: [] }; }
      list.items.push(m[1]);
    } else if ((m = line.match(/^&gt;\s?(.*)$/))) {
      flushPara(); flushList();
      out += "<blockquote>" + inline(m[1]) + "</blockquote>";
    } else {
      flushList();
      para.push(line);
    }
  }
  flushPara(); flushList();
  return out;
}

document.addEventListener("click", (e) => {
  const b = e.target.closest(".copy-code");
  if (!b) return;
  copy(b.closest(".code").querySelector("code").textContent, b);
});

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const ta = el("textarea");
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  if (button) {
    const old = button.textContent;
    button.textContent = t("btn.copied");
    button.classList.add("done");
    setTimeout(() => { button.textContent = old; button.classList.remove("done"); }, 1500);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tabs and the language switch.

function show(view) {
  if (!["models", "chat", "import"].includes(view)) view = "models";
  for (const s of document.querySelectorAll(".view")) s.classList.toggle("on", s.id === "view-" + view);
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.view === view));
  document.body.dataset.view = view;
  if (view === "chat") $("#chat-input").focus();
}
for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => { location.hash = b.dataset.view; });
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
for (const a of document.querySelectorAll(".lang-switch a")) {
  a.addEventListener("click", (e) => {
    e.preventDefault();
    location.href = "?lang=" + a.dataset.lang + location.hash;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Models.

const dialog = $("#dialog");
let dialogSave = null;

function openDialog(title, hint, text, opts) {
  $("#dialog-title").textContent = title;
  $("#dialog-hint").textContent = hint || "";
  $("#dialog-hint").hidden = !hint;
  const ta = $("#dialog-text");
  ta.value = text;
  ta.readOnly = !opts.save;
  $("#dialog-error").hidden = true;
  $("#dialog-save").hidden = !opts.save;
  $("#dialog-copy").hidden = !opts.copy;
  dialogSave = opts.save || null;
  dialog.showModal();
}
$("#dialog-copy").addEventListener("click", () => copy($("#dialog-text").value, $("#dialog-copy")));
$("#dialog-save").addEventListener("click", async () => {
  if (!dialogSave) return;
  try {
    await dialogSave($("#dialog-text").value);
    dialog.close();
    location.reload();
  } catch (e) {
    $("#dialog-error").textContent = e.message;
    $("#dialog-error").hidden = false;
  }
});

const saveEntry = async (text) => { await api("/ui/api/models", { method: "POST", body: text, headers: { "content-type": "text/plain" } }); };

$("#models-table").addEventListener("click", async (e) => {
  const b = e.target.closest("button[data-act]");
  if (!b) return;
  const name = b.dataset.name;
  const q = "?name=" + encodeURIComponent(name);
  try {
    if (b.dataset.act === "export") {
      const r = await api("/ui/api/export" + q);
      openDialog(t("models.export_title"), name, await r.text(), { copy: true });
    } else if (b.dataset.act === "edit") {
      const j = await (await api("/ui/api/model" + q)).json();
      openDialog(t("models.editor_title"), t("models.editor_hint"), j.entry, { save: saveEntry });
    } else if (b.dataset.act === "remove") {
      if (!confirm(t("models.remove_confirm", { name }))) return;
      await api("/ui/api/model" + q, { method: "DELETE" });
      location.reload();
    }
  } catch (err) {
    alert(err.message);
  }
});

$("#model-add").addEventListener("click", () => {
  const sample = '{\n  baseId: "arn:aws:bedrock:' + boot.region + ':123456789012:imported-model/abcdefghijkl",\n  name: "my-model",\n  provider: "custom",\n  category: "text",\n  toolUse: true,\n  maxTokensLimit: 4096,\n  supportsStreamingToolUse: false,\n  availability: { base: ["' + boot.region + '"] },\n}\n';
  openDialog(t("models.editor_title"), t("models.editor_hint"), sample, { save: saveEntry });
});

function filterModels() {
  const q = $("#model-filter").value.trim().toLowerCase();
  let n = 0;
  for (const tr of document.querySelectorAll("#models-table tbody tr")) {
    const on = !q || tr.dataset.search.includes(q);
    tr.hidden = !on;
    if (on) n++;
  }
  $("#model-count").textContent = t("models.count", { n });
}
$("#model-filter").addEventListener("input", filterModels);

// ---------------------------------------------------------------------------------------------------------------
// Chat.

const chat = { session: null, turn: null, busy: false };
const messages = $("#messages");

function setStatus(s) {
  $("#chat-status").textContent = s || "";
  $("#chat-status").classList.toggle("on", Boolean(s));
}

function setBusy(b) {
  chat.busy = b;
  $("#chat-send").disabled = b;
  $("#chat-stop").hidden = !b;
  $("#chat-model").disabled = b;
}

function sessionLabel() {
  $("#session-label").textContent = chat.session ? t("chat.session", { id: chat.session }) : "";
}

function scrollDown() {
  messages.scrollTop = messages.scrollHeight;
}

function notice(kind, text) {
  const n = el("div", "notice " + kind, esc(text));
  messages.appendChild(n);
  scrollDown();
  return n;
}

// One assistant message being written: text blocks re-rendered as they grow, reasoning folded, tool cards.
class Answer {
  constructor() {
    this.root = el("div", "msg assistant");
    this.root.innerHTML = '<div class="who">' + esc(t("chat.assistant")) + '</div><div class="body"></div>';
    this.body = $(".body", this.root);
    this.text = null;
    this.reasoning = null;
    this.tools = {};
    this.dirty = new Set();
    this.pending = null;
    messages.appendChild(this.root);
  }
  addText(s) {
    if (this.reasoning) { this.reasoning.el.open = false; this.reasoning = null; }
    if (!this.text) { this.text = { el: el("div", "md"), raw: "" }; this.body.appendChild(this.text.el); }
    this.text.raw += s;
    this.dirty.add(this.text);
    this.render();
  }
  render() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      for (const b of this.dirty) b.el.innerHTML = markdown(b.raw);
      this.dirty.clear();
      scrollDown();
    });
  }
  addReasoning(s) {
    this.text = null;
    if (!this.reasoning) {
      const d = el("details", "reasoning");
      d.open = true;
      d.innerHTML = "<summary>" + esc(t("chat.reasoning")) + '</summary><div class="pre"></div>';
      this.body.appendChild(d);
      this.reasoning = { el: d, div: $(".pre", d) };
    }
    this.reasoning.div.textContent += s;
    scrollDown();
  }
  toolUse(id, name, input) {
    if (this.reasoning) { this.reasoning.el.open = false; this.reasoning = null; }
    this.text = null;
    const d = el("details", "tool running");
    d.open = true;
    d.innerHTML = '<summary><span class="tool-icon">⚙</span><span class="tool-name"></span><span class="tool-state">' + esc(t("chat.tool_running")) +
      '</span></summary><div class="tool-io"><div class="label">' + esc(t("chat.tool_input")) + '</div><pre class="in"></pre><div class="out-wrap" hidden><div class="label out-label"></div><pre class="out"></pre></div></div>';
    $(".tool-name", d).textContent = name;
    $(".in", d).textContent = typeof input === "string" ? input : JSON.stringify(input, null, 2);
    this.body.appendChild(d);
    this.tools[id] = d;
    scrollDown();
    return d;
  }
  toolResult(id, output, isError) {
    const d = this.tools[id];
    if (!d) return;
    d.classList.remove("running");
    d.classList.add(isError ? "failed" : "ok");
    $(".tool-state", d).textContent = isError ? t("chat.tool_error") : "✓";
    $(".out-label", d).textContent = isError ? t("chat.tool_error") : t("chat.tool_result");
    $(".out", d).textContent = output;
    $(".out-wrap", d).hidden = false;
    scrollDown();
  }
}

function userMessage(text) {
  const m = el("div", "msg user");
  m.innerHTML = '<div class="who">' + esc(t("chat.you")) + '</div><div class="body md"></div>';
  $(".body", m).innerHTML = markdown(text);
  messages.appendChild(m);
  scrollDown();
}

function clearMessages() {
  messages.innerHTML = "";
  const empty = el("div", "empty");
  empty.id = "chat-empty";
  empty.innerHTML = "<h2>" + esc(t("chat.empty_title")) + "</h2><p>" + esc(t("chat.empty")) + "</p>";
  messages.appendChild(empty);
}

function hideEmpty() {
  const e = $("#chat-empty");
  if (e) e.remove();
}

function approval(ev) {
  const card = el("div", "approval");
  card.dataset.id = ev.id;
  card.innerHTML = '<div class="q">' + esc(t("chat.approve_q")) + '</div><pre class="cmd"></pre><div class="buttons"><button type="button" class="ghost decline">' +
    esc(t("chat.approve_decline")) + '</button><button type="button" class="primary run">' + esc(t("chat.approve_run")) + "</button></div>";
  $(".cmd", card).textContent = ev.command;
  const answer = async (run) => {
    for (const b of card.querySelectorAll("button")) b.disabled = true;
    try {
      await api("/ui/api/approve", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: ev.id, run }) });
    } catch (e) {
      notice("error", e.message);
    }
  };
  $(".run", card).addEventListener("click", () => answer(true));
  $(".decline", card).addEventListener("click", () => answer(false));
  return card;
}

async function send(text) {
  hideEmpty();
  userMessage(text);
  setBusy(true);
  setStatus(t("chat.waiting"));
  let answer = null;
  const current = () => answer || (answer = new Answer());
  const maxTokens = parseInt($("#chat-max-tokens").value, 10);
  const body = {
    session: chat.session, model: $("#chat-model").value, text,
    tool_choice: $("#chat-tool-choice").value || null, max_tokens: maxTokens > 0 ? maxTokens : null,
  };
  try {
    const r = await api("/ui/api/chat", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    await readLines(r, (ev) => {
      switch (ev.t) {
        case "turn":
          chat.turn = ev.turn;
          chat.session = ev.session;
          sessionLabel();
          break;
        case "request":
          if (!answer || !answer.text) {
            setStatus(ev.api === "Converse" ? t("chat.waiting_whole") : ev.api === "InvokeModel" ? t("chat.waiting_invoke") : t("chat.waiting"));
          }
          break;
        case "text": setStatus(""); current().addText(ev.v); break;
        case "reasoning": setStatus(""); current().addReasoning(ev.v); break;
        case "tool_use": setStatus(""); current().toolUse(ev.id, ev.name, ev.input); break;
        case "tool_result": current().toolResult(ev.id, ev.output, ev.is_error); setStatus(t("chat.waiting")); break;
        case "approve": setStatus(""); current().body.appendChild(approval(ev)); scrollDown(); break;
        case "approved": {
          const card = document.querySelector('.approval[data-id="' + ev.id + '"]');
          if (card) {
            card.classList.add(ev.run ? "allowed" : "declined");
            $(".buttons", card).innerHTML = '<span class="verdict">' + esc(ev.run ? t("chat.approved") : t("chat.declined")) + "</span>";
          }
          break;
        }
        case "warming": setStatus(t("chat.warming", { elapsed: mmss(ev.elapsed), timeout: mmss(ev.timeout), attempt: ev.attempt })); break;
        case "retrying": setStatus(t("chat.retrying", { code: ev.code, attempt: ev.attempt, delay: ev.delay.toFixed(1) })); break;
        case "nonstreaming": notice("info", t("chat.nonstreaming")); break;
        case "truncated": notice("warn", t("chat.truncated")); break;
        case "trimmed": notice("info trimmed", t("chat.trimmed", { n: ev.n })); break;
        case "withdrawn": notice("warn", t("chat.withdrawn")); break;
        case "cancelled": notice("cancelled", t("chat.cancelled")); break;
        case "end":
          if (ev.stop_reason === "max_tokens") notice("warn", t("chat.cut"));
          else if (ev.empty) notice("info", t("chat.no_text", { reason: ev.stop_reason }));
          break;
        case "error": notice("error", t("chat.error", { message: ev.message })); break;
      }
    });
  } catch (e) {
    notice("error", t("chat.error", { message: e.message }));
  }
  chat.turn = null;
  setStatus("");
  setBusy(false);
  if (answer) answer.render();
  loadSessions();
}

$("#composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text || chat.busy) return;
  input.value = "";
  send(text);
});
$("#chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("#composer").requestSubmit();
  }
});
$("#chat-stop").addEventListener("click", async () => {
  if (!chat.turn) return;
  $("#chat-stop").disabled = true;
  try {
    await api("/ui/api/cancel", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ turn: chat.turn }) });
  } catch (e) {
    notice("error", e.message);
  }
  $("#chat-stop").disabled = false;
});
$("#chat-new").addEventListener("click", () => newChat());

function newChat(model) {
  if (chat.busy) return;
  chat.session = null;
  if (model) selectModel(model);
  sessionLabel();
  clearMessages();
  markSession();
  $("#chat-input").focus();
}

function selectModel(name) {
  const sel = $("#chat-model");
  if (![...sel.options].some((o) => o.value === name)) {
    const o = el("option");
    o.value = name;
    o.textContent = name;
    sel.insertBefore(o, sel.firstChild);
  }
  sel.value = name;
}

function markSession() {
  for (const li of document.querySelectorAll("#session-list li")) li.classList.toggle("on", li.dataset.id === chat.session);
}

async function loadSessions() {
  let list = [];
  try { list = await (await api("/ui/api/sessions")).json(); } catch (_) { return; }
  const ul = $("#session-list");
  ul.innerHTML = "";
  if (!list.length) { ul.appendChild(el("li", "none", esc(t("chat.no_sessions")))); return; }
  for (const s of list) {
    const li = el("li");
    li.dataset.id = s.id;
    const when = new Date(s.modified * 1000).toLocaleString(boot.lang, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    li.innerHTML = '<div class="title"></div><div class="sub"><span class="model"></span> · ' + esc(when) + "</div>";
    $(".title", li).textContent = s.title || t("chat.untitled");
    $(".model", li).textContent = s.model;
    li.addEventListener("click", () => openSession(s.id));
    ul.appendChild(li);
  }
  markSession();
}

async function openSession(id) {
  if (chat.busy) return;
  let s;
  try { s = await (await api("/ui/api/session?id=" + encodeURIComponent(id))).json(); } catch (e) { notice("error", e.message); return; }
  chat.session = s.id;
  selectModel(s.model);
  sessionLabel();
  messages.innerHTML = "";
  let answer = null;
  for (const m of s.messages) {
    if (m.role === "user") {
      const texts = m.content.filter((b) => b.text !== undefined).map((b) => b.text);
      for (const b of m.content) if (b.toolResult && answer) answer.toolResult(b.toolResult.toolUseId, b.toolResult.content, b.toolResult.isError);
      if (texts.length) { answer = null; userMessage(texts.join("\n")); }
    } else {
      if (!answer) answer = new Answer();
      for (const b of m.content) {
        if (b.text !== undefined) { answer.addText(b.text); answer.text = null; }
        else if (b.reasoningContent) { answer.addReasoning(b.reasoningContent.text); answer.reasoning.el.open = false; answer.reasoning = null; }
        else if (b.toolUse) answer.toolUse(b.toolUse.toolUseId, b.toolUse.name, b.toolUse.input);
      }
    }
  }
  if (!s.messages.length) clearMessages();
  markSession();
  scrollDown();
}

// ---------------------------------------------------------------------------------------------------------------
// Import.

const steps = $("#import-steps");

function step(key, title) {
  let s = steps.querySelector('[data-step="' + key + '"]');
  if (!s) {
    s = el("section", "card step");
    s.dataset.step = key;
    s.innerHTML = '<h3><span class="dot"></span><span class="title"></span></h3><div class="content"></div>';
    $(".title", s).textContent = title;
    steps.appendChild(s);
  }
  return s;
}

function stepState(s, state) {
  s.classList.remove("active", "ok", "bad");
  s.classList.add(state);
}

function progress(s, done, total, text) {
  let p = $(".progress", s);
  if (!p) {
    p = el("div", "progress", '<div class="bar"><div class="fill"></div></div><div class="ptext"></div>');
    $(".content", s).appendChild(p);
  }
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 100;
  $(".fill", p).style.width = pct.toFixed(1) + "%";
  $(".ptext", p).textContent = text;
}

function findings(s, report) {
  const c = $(".content", s);
  const summary = t("import.summary", {
    arch: report.architecture || "?",
    weights: bytes(report.weight_bytes),
    tensors: report.tensor_count,
    context: report.context_length || "?",
    converse: report.instruct_supported ? t("val.yes") : t("val.no"),
  });
  let html = '<p class="summary">' + esc(summary) + "</p>";
  const shown = report.findings.filter((f) => f.severity !== "info" || report.findings.length < 8);
  if (!shown.length) html += '<p class="ok-line">' + esc(t("import.no_findings")) + "</p>";
  else {
    html += '<ul class="findings">';
    for (const f of shown) {
      html += '<li class="' + esc(f.severity) + '"><span class="sev">' + esc(t("sev." + f.severity)) + '</span><div><code>' + esc(f.code) + "</code> " + esc(f.message) +
        (f.fix && f.severity !== "info" ? '<div class="fix"><strong>' + esc(t("import.fix")) + ":</strong> " + esc(f.fix) + "</div>" : "") + "</div></li>";
    }
    html += "</ul>";
  }
  c.innerHTML = html;
  stepState(s, report.findings.some((f) => f.severity === "error") ? "bad" : "ok");
}

function diff(text) {
  return '<pre class="diff">' + text.split("\n").map((l) => {
    const cls = l.startsWith("+++") || l.startsWith("---") ? "file" : l.startsWith("@@") ? "hunk" : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "";
    return '<span class="' + cls + '">' + esc(l) + "</span>";
  }).join("\n") + "</pre>";
}

async function runImport(checkOnly) {
  const source = $("#import-source").value.trim();
  const name = $("#import-name").value.trim();
  if (!source || (!checkOnly && !name)) { alert(t("import.need")); return; }
  steps.innerHTML = "";
  for (const b of document.querySelectorAll("#import-form button")) b.disabled = true;
  const fail = (msg) => { const s = step("end", t("nav.import")); stepState(s, "bad"); $(".content", s).innerHTML = '<p class="notice error">' + esc(msg) + "</p>"; };
  try {
    const r = await api("/ui/api/import", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({
      source, name, check_only: checkOnly,
      bucket: $("#import-bucket").value.trim() || null, role_arn: $("#import-role").value.trim() || null,
      create_bucket: $("#import-create-bucket").checked,
    }) });
    await readLines(r, (ev) => {
      switch (ev.t) {
        case "download_file": {
          const s = step("download", t("import.download"));
          stepState(s, "active");
          break;
        }
        case "download": progress(step("download", t("import.download")), ev.done, ev.total, t("import.progress", { sent: bytes(ev.done), total: bytes(ev.total), rate: bytes(ev.rate) })); break;
        case "checked": case "check_done": {
          const d = steps.querySelector('[data-step="download"]');
          if (d) stepState(d, "ok");
          findings(step("check", t("import.findings")), ev.report);
          break;
        }
        case "repaired": {
          const s = step("template", t("import.template"));
          let html = "<p>" + esc(ev.message) + "</p>";
          if (ev.changed) html += (ev.staged ? '<p class="hint">' + esc(t("import.template_staged")) + "</p>" : "") + diff(ev.diff);
          $(".content", s).innerHTML = html;
          stepState(s, "ok");
          break;
        }
        case "repair_failed": {
          const s = step("template", t("import.template"));
          $(".content", s).innerHTML = '<p class="notice warn">' + esc(t("import.template_failed", { message: ev.message })) + "</p>";
          stepState(s, "bad");
          break;
        }
        case "planned": {
          const s = step("upload", t("import.upload"));
          stepState(s, "active");
          $(".content", s).innerHTML = '<p class="plan">' + esc(t("import.plan", { files: ev.files, total: bytes(ev.total), to_send: bytes(ev.to_send) })) + "</p>";
          progress(s, 0, ev.to_send, t("import.progress", { sent: bytes(0), total: bytes(ev.to_send), rate: bytes(0) }));
          break;
        }
        case "upload": progress(step("upload", t("import.upload")), ev.sent, ev.total, t("import.progress", { sent: bytes(ev.sent), total: bytes(ev.total), rate: bytes(ev.rate) })); break;
        case "uploaded": {
          const s = step("upload", t("import.upload"));
          progress(s, 1, 1, t("import.uploaded", { sent: bytes(ev.sent), seconds: ev.seconds.toFixed(1), rate: bytes(ev.rate), skipped: bytes(ev.skipped) }));
          stepState(s, "ok");
          break;
        }
        case "job_created": {
          const s = step("job", t("import.job"));
          stepState(s, "active");
          $(".content", s).innerHTML = '<p class="mono small"></p><p class="job-status"></p>';
          $(".mono", s).textContent = t("import.job_created", { job: ev.job });
          break;
        }
        case "job": {
          const s = step("job", t("import.job"));
          const st = $(".job-status", s) || $(".content", s).appendChild(el("p", "job-status"));
          st.textContent = t("import.job_status", { status: ev.status, elapsed: ev.elapsed });
          if (ev.status === "Completed") stepState(s, "ok");
          if (ev.status === "Failed") stepState(s, "bad");
          break;
        }
        case "done": {
          const job = steps.querySelector('[data-step="job"]');
          if (job) stepState(job, "ok");
          const s = step("end", t("import.registered", { name: ev.name }));
          stepState(s, "ok");
          s.classList.add("done");
          const b = el("button", "primary", esc(t("import.chat")));
          b.id = "import-chat";
          b.addEventListener("click", () => { location.hash = "chat"; newChat(ev.name); });
          $(".content", s).appendChild(b);
          break;
        }
        case "rejected": fail(t("import.rejected", { n: ev.errors })); break;
        case "failed": fail(t("import.failed", { message: ev.message })); break;
        case "started": { const s = step("end", t("import.started", { job: ev.job })); stepState(s, "ok"); break; }
        case "error": fail(ev.message); break;
      }
    });
  } catch (e) {
    fail(e.message);
  }
  for (const b of document.querySelectorAll("#import-form button")) b.disabled = false;
}

$("#import-form").addEventListener("submit", (e) => { e.preventDefault(); runImport(false); });
$("#import-check").addEventListener("click", () => runImport(true));

show(location.hash.slice(1));
sessionLabel();
loadSessions();
