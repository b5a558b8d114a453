//! Every string of the UI, in one table per language (English and Japanese), the choice from `Accept-Language`, and
//! the table as JSON for the page's script. Placeholders are `{name}`; both tables have the same keys and the same
//! placeholders (tested).

/// A language of the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Japanese.
    Ja,
}

impl Lang {
    /// Every language, in the order the switch shows them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    /// `en`, `ja`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ja => "日本語",
        }
    }

    /// `en` / `ja` (any region or case: `ja-JP`, `EN-us`); anything else is `None`.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The best of our languages for an `Accept-Language` header (highest weight first, then the header's order);
    /// English when it names none of them.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Lang::parse) else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The table.
    pub fn table(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::En => EN,
            Lang::Ja => JA,
        }
    }

    /// One string (English when this table lacks it, the key when both do).
    pub fn t(self, key: &str) -> &'static str {
        let find = |t: &'static [(&'static str, &'static str)]| t.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        find(self.table()).or_else(|| find(EN)).unwrap_or("?")
    }

    /// One string with its `{name}` placeholders filled.
    pub fn fmt(self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (k, v) in args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// The table as a JSON object, for the page's script.
    pub fn json(self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .table()
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

const EN: &[(&str, &str)] = &[
    ("app.title", "cmi · models, chat, import"),
    ("app.tagline", "Bedrock Custom Model Import, in the browser"),
    ("nav.models", "Models"),
    ("nav.chat", "Chat"),
    ("nav.import", "Import"),
    ("target.label", "Target"),
    ("lang.label", "Language"),
    ("models.heading", "Model registry"),
    (
        "models.intro",
        "Foundation models for {region} and your imported models, with what each supports. Edit your own entries, or export one as a Bedrock Engineer models.ts entry.",
    ),
    ("models.filter", "Filter by name, provider or ID…"),
    ("models.imported_error", "Could not list the imported models: {error}"),
    ("models.count", "{n} models"),
    ("col.name", "Name"),
    ("col.source", "Source"),
    ("col.model_id", "Model ID"),
    ("col.provider", "Provider"),
    ("col.converse", "Converse"),
    ("col.tools", "Tools"),
    ("col.stream_tools", "Streams with tools"),
    ("col.context", "Context"),
    ("col.max_tokens", "Max tokens"),
    ("col.actions", "Actions"),
    ("src.builtin", "built-in"),
    ("src.user", "yours"),
    ("src.imported", "imported"),
    ("src.live", "live"),
    ("src.unregistered", "not in the registry"),
    ("val.yes", "yes"),
    ("val.no", "no"),
    ("btn.export", "Export"),
    ("btn.edit", "Edit"),
    ("btn.remove", "Remove"),
    ("btn.add", "Add a model"),
    ("btn.add_registry", "Add to registry"),
    ("btn.copy", "Copy"),
    ("btn.copied", "Copied"),
    ("btn.save", "Save"),
    ("btn.close", "Close"),
    ("models.remove_confirm", "Remove {name} from your registry?"),
    ("models.editor_title", "Model entry"),
    (
        "models.editor_hint",
        "JSON or JSON5, in the models.ts shape (baseId, name, provider, toolUse, maxTokensLimit, …).",
    ),
    ("models.export_title", "Bedrock Engineer models.ts entry"),
    ("models.saved", "Saved."),
    ("chat.new", "New chat"),
    ("chat.sessions", "Sessions"),
    ("chat.no_sessions", "No saved sessions yet."),
    ("chat.model", "Model"),
    ("chat.tool_choice", "First tool call"),
    ("chat.tool_auto", "the model decides"),
    ("chat.tool_any", "any tool (forced)"),
    ("chat.max_tokens", "Max tokens per call"),
    ("chat.max_tokens_ph", "the model's limit"),
    (
        "chat.placeholder",
        "Ask something… (Enter sends, Shift+Enter adds a line)",
    ),
    ("chat.send", "Send"),
    ("chat.stop", "Stop"),
    ("chat.empty_title", "Start a conversation"),
    (
        "chat.empty",
        "Pick a model and ask. The agent reads and lists files in its workspace, writes files and runs commands; it asks before running anything.",
    ),
    ("chat.you", "You"),
    ("chat.assistant", "Assistant"),
    ("chat.reasoning", "Reasoning"),
    ("chat.tool_input", "Input"),
    ("chat.tool_result", "Result"),
    ("chat.tool_error", "Error"),
    ("chat.tool_running", "running…"),
    ("chat.approve_q", "The model wants to run this command:"),
    ("chat.approve_run", "Run it"),
    ("chat.approve_decline", "Decline"),
    ("chat.approved", "Allowed"),
    ("chat.declined", "Declined"),
    ("chat.waiting", "Waiting for the model…"),
    (
        "chat.waiting_whole",
        "Waiting for the whole answer (this model does not stream with tools)…",
    ),
    (
        "chat.waiting_invoke",
        "Waiting for the whole answer (InvokeModel, not streamed)…",
    ),
    (
        "chat.warming",
        "The model is warming up (cold start): {elapsed} elapsed, giving up after {timeout}, attempt {attempt}",
    ),
    ("chat.retrying", "{code}: retrying ({attempt}) in {delay} s"),
    (
        "chat.trimmed",
        "The conversation is longer than the model's context: the oldest {n} messages are no longer sent (the session keeps them).",
    ),
    (
        "chat.withdrawn",
        "This question alone is longer than the model's context, so it was taken out of the session.",
    ),
    (
        "chat.truncated",
        "A tool call was cut off at the output limit; the model is asked for smaller calls.",
    ),
    (
        "chat.nonstreaming",
        "This model does not stream with tools: its answers now come whole (remembered in the registry).",
    ),
    ("chat.cancelled", "Cancelled — the session is kept."),
    ("chat.cut", "Cut off at the output limit."),
    (
        "chat.no_text",
        "The model ended its turn without answer text (stop reason {reason}).",
    ),
    ("chat.error", "Error: {message}"),
    ("chat.session", "Session {id}"),
    ("chat.messages", "{n} messages"),
    ("chat.resumed", "Resumed session {id}."),
    ("chat.untitled", "(no question yet)"),
    ("import.heading", "Import a model"),
    (
        "import.intro",
        "A local Hugging Face folder or a repo id (org/name). The same pipeline as cmi import: preflight, chat-template repair, upload, import job, registry.",
    ),
    ("import.source", "Folder or repo id"),
    ("import.source_ph", "/path/to/model or org/name"),
    ("import.name", "Model name"),
    ("import.name_ph", "my-model"),
    ("import.check", "Check only"),
    ("import.aws", "AWS settings (the local Bedrock needs none)"),
    ("import.bucket", "S3 bucket"),
    ("import.create_bucket", "Create the bucket if it does not exist"),
    ("import.role", "IAM role ARN Bedrock assumes to read the bucket"),
    ("import.run", "Import"),
    ("import.findings", "Preflight"),
    ("import.no_findings", "No findings: ready to import."),
    (
        "import.summary",
        "{arch}, {weights} of weights in {tensors} tensors, context {context}, Converse {converse}",
    ),
    ("import.fix", "Fix"),
    ("import.template", "Chat template"),
    (
        "import.template_staged",
        "Repaired in a staged copy; your folder is unchanged.",
    ),
    (
        "import.template_failed",
        "The chat template could not be repaired ({message}); it is imported as it is.",
    ),
    ("import.download", "Download"),
    ("import.upload", "Upload"),
    ("import.plan", "{files} files, {total} in all, {to_send} to send"),
    ("import.progress", "{sent} of {total} · {rate}/s"),
    (
        "import.uploaded",
        "Uploaded {sent} in {seconds} s ({rate}/s); {skipped} already there.",
    ),
    ("import.job", "Import job"),
    ("import.job_created", "Job {job}"),
    ("import.job_status", "{status} ({elapsed} s)"),
    ("import.registered", "{name} is imported and in the registry."),
    ("import.chat", "Chat with it"),
    ("import.rejected", "{n} error(s) in the folder: nothing was uploaded."),
    ("import.failed", "The import job failed: {message}"),
    ("import.started", "The job runs on: {job}"),
    ("import.need", "Give a folder or repo id, and a model name."),
    ("sev.error", "error"),
    ("sev.warning", "warning"),
    ("sev.info", "info"),
    ("error.network", "The server did not answer: {error}"),
];

const JA: &[(&str, &str)] = &[
    ("app.title", "cmi · モデル・チャット・インポート"),
    ("app.tagline", "ブラウザで使う Bedrock カスタムモデルインポート"),
    ("nav.models", "モデル"),
    ("nav.chat", "チャット"),
    ("nav.import", "インポート"),
    ("target.label", "接続先"),
    ("lang.label", "言語"),
    ("models.heading", "モデルレジストリ"),
    (
        "models.intro",
        "{region} の基盤モデルとインポートしたモデル、それぞれの対応機能です。自分のエントリを編集したり、Bedrock Engineer の models.ts 形式で書き出したりできます。",
    ),
    ("models.filter", "名前・プロバイダ・ID で絞り込み…"),
    (
        "models.imported_error",
        "インポート済みモデルを取得できませんでした: {error}",
    ),
    ("models.count", "{n} 件のモデル"),
    ("col.name", "名前"),
    ("col.source", "種類"),
    ("col.model_id", "モデル ID"),
    ("col.provider", "プロバイダ"),
    ("col.converse", "Converse"),
    ("col.tools", "ツール"),
    ("col.stream_tools", "ツール付きストリーミング"),
    ("col.context", "コンテキスト"),
    ("col.max_tokens", "最大トークン"),
    ("col.actions", "操作"),
    ("src.builtin", "組み込み"),
    ("src.user", "ユーザー"),
    ("src.imported", "インポート"),
    ("src.live", "稼働中"),
    ("src.unregistered", "レジストリ未登録"),
    ("val.yes", "はい"),
    ("val.no", "いいえ"),
    ("btn.export", "書き出し"),
    ("btn.edit", "編集"),
    ("btn.remove", "削除"),
    ("btn.add", "モデルを追加"),
    ("btn.add_registry", "レジストリに追加"),
    ("btn.copy", "コピー"),
    ("btn.copied", "コピーしました"),
    ("btn.save", "保存"),
    ("btn.close", "閉じる"),
    ("models.remove_confirm", "{name} をレジストリから削除しますか？"),
    ("models.editor_title", "モデルエントリ"),
    (
        "models.editor_hint",
        "JSON または JSON5、models.ts と同じ形です（baseId, name, provider, toolUse, maxTokensLimit など）。",
    ),
    ("models.export_title", "Bedrock Engineer の models.ts エントリ"),
    ("models.saved", "保存しました。"),
    ("chat.new", "新しいチャット"),
    ("chat.sessions", "セッション"),
    ("chat.no_sessions", "保存されたセッションはまだありません。"),
    ("chat.model", "モデル"),
    ("chat.tool_choice", "最初のツール呼び出し"),
    ("chat.tool_auto", "モデルに任せる"),
    ("chat.tool_any", "いずれかのツール（強制）"),
    ("chat.max_tokens", "1 回の最大トークン"),
    ("chat.max_tokens_ph", "モデルの上限"),
    ("chat.placeholder", "質問を入力…（Enter で送信、Shift+Enter で改行）"),
    ("chat.send", "送信"),
    ("chat.stop", "停止"),
    ("chat.empty_title", "会話を始めましょう"),
    (
        "chat.empty",
        "モデルを選んで質問してください。エージェントはワークスペース内のファイルの読み取り・一覧・書き込みとコマンド実行ができます。コマンドは実行前に確認します。",
    ),
    ("chat.you", "あなた"),
    ("chat.assistant", "アシスタント"),
    ("chat.reasoning", "推論"),
    ("chat.tool_input", "入力"),
    ("chat.tool_result", "結果"),
    ("chat.tool_error", "エラー"),
    ("chat.tool_running", "実行中…"),
    ("chat.approve_q", "モデルが次のコマンドの実行を求めています:"),
    ("chat.approve_run", "実行する"),
    ("chat.approve_decline", "拒否する"),
    ("chat.approved", "許可しました"),
    ("chat.declined", "拒否しました"),
    ("chat.waiting", "モデルの応答を待っています…"),
    (
        "chat.waiting_whole",
        "回答全体を待っています（このモデルはツール付きでストリーミングできません）…",
    ),
    (
        "chat.waiting_invoke",
        "回答全体を待っています（InvokeModel、ストリーミングなし）…",
    ),
    (
        "chat.warming",
        "モデルを起動中です（コールドスタート）: 経過 {elapsed}、{timeout} で打ち切り、{attempt} 回目",
    ),
    ("chat.retrying", "{code}: {delay} 秒後に再試行（{attempt} 回目）"),
    (
        "chat.trimmed",
        "会話がモデルのコンテキストより長くなりました。古い {n} 件のメッセージは送信されません（セッションには残ります）。",
    ),
    (
        "chat.withdrawn",
        "この質問だけでモデルのコンテキストを超えるため、セッションから取り除きました。",
    ),
    (
        "chat.truncated",
        "ツール呼び出しが出力上限で途切れたため、より小さな呼び出しをモデルに求めています。",
    ),
    (
        "chat.nonstreaming",
        "このモデルはツール付きでストリーミングできないため、回答はまとめて届きます（レジストリに記録しました）。",
    ),
    ("chat.cancelled", "キャンセルしました。セッションは保持されています。"),
    ("chat.cut", "出力上限で途切れました。"),
    (
        "chat.no_text",
        "モデルは回答テキストなしでターンを終えました（停止理由 {reason}）。",
    ),
    ("chat.error", "エラー: {message}"),
    ("chat.session", "セッション {id}"),
    ("chat.messages", "{n} 件のメッセージ"),
    ("chat.resumed", "セッション {id} を再開しました。"),
    ("chat.untitled", "（まだ質問なし）"),
    ("import.heading", "モデルをインポート"),
    (
        "import.intro",
        "ローカルの Hugging Face フォルダ、またはリポジトリ ID（org/name）。cmi import と同じパイプラインです: 事前チェック、チャットテンプレートの修復、アップロード、インポートジョブ、レジストリ登録。",
    ),
    ("import.source", "フォルダまたはリポジトリ ID"),
    ("import.source_ph", "/path/to/model または org/name"),
    ("import.name", "モデル名"),
    ("import.name_ph", "my-model"),
    ("import.check", "チェックのみ"),
    ("import.aws", "AWS の設定（ローカル Bedrock では不要）"),
    ("import.bucket", "S3 バケット"),
    ("import.create_bucket", "バケットがなければ作成する"),
    ("import.role", "Bedrock がバケットを読むために引き受ける IAM ロール ARN"),
    ("import.run", "インポート"),
    ("import.findings", "事前チェック"),
    ("import.no_findings", "問題はありません。インポートできます。"),
    (
        "import.summary",
        "{arch}、重み {weights}（{tensors} テンソル）、コンテキスト {context}、Converse {converse}",
    ),
    ("import.fix", "対処"),
    ("import.template", "チャットテンプレート"),
    (
        "import.template_staged",
        "作業用コピーで修復しました。元のフォルダは変更されていません。",
    ),
    (
        "import.template_failed",
        "チャットテンプレートを修復できませんでした（{message}）。そのままインポートします。",
    ),
    ("import.download", "ダウンロード"),
    ("import.upload", "アップロード"),
    ("import.plan", "{files} ファイル、合計 {total}、送信 {to_send}"),
    ("import.progress", "{sent} / {total} · {rate}/秒"),
    (
        "import.uploaded",
        "{sent} を {seconds} 秒でアップロードしました（{rate}/秒）。{skipped} は既にありました。",
    ),
    ("import.job", "インポートジョブ"),
    ("import.job_created", "ジョブ {job}"),
    ("import.job_status", "{status}（{elapsed} 秒）"),
    ("import.registered", "{name} をインポートし、レジストリに登録しました。"),
    ("import.chat", "このモデルとチャット"),
    (
        "import.rejected",
        "フォルダに {n} 件のエラーがあるため、何もアップロードしていません。",
    ),
    ("import.failed", "インポートジョブが失敗しました: {message}"),
    ("import.started", "ジョブは実行中です: {job}"),
    (
        "import.need",
        "フォルダまたはリポジトリ ID と、モデル名を入力してください。",
    ),
    ("sev.error", "エラー"),
    ("sev.warning", "警告"),
    ("sev.info", "情報"),
    ("error.network", "サーバーから応答がありません: {error}"),
];

#[cfg(test)]
mod tests {
    use super::{EN, JA, Lang};
    use std::collections::BTreeSet;

    fn placeholders(s: &str) -> BTreeSet<String> {
        s.split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}'))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    #[test]
    fn both_tables_have_the_same_keys_and_placeholders() {
        for table in [EN, JA] {
            let keys: BTreeSet<&str> = table.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys.len(), table.len(), "a key is twice in a table");
            assert!(table.iter().all(|(_, v)| !v.trim().is_empty()), "an empty string");
        }
        let en: Vec<&str> = EN.iter().map(|(k, _)| *k).collect();
        let ja: Vec<&str> = JA.iter().map(|(k, _)| *k).collect();
        assert_eq!(en, ja, "the tables list the same keys in the same order");
        for ((k, e), (_, j)) in EN.iter().zip(JA) {
            assert_eq!(placeholders(e), placeholders(j), "placeholders of {k}");
        }
        // Japanese is translated, not copied (a few strings are the same in both, like product names).
        let same = EN.iter().zip(JA).filter(|((_, e), (_, j))| e == j).count();
        assert!(same * 10 < EN.len(), "{same} strings are the same in both tables");
    }

    #[test]
    fn the_browser_language_picks_the_table() {
        assert_eq!(Lang::from_accept_language("ja,en-US;q=0.9,en;q=0.8"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,ja;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("ja-JP"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("fr-FR, ja;q=0.5"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("fr-FR, de;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("en;q=0.2, ja;q=0.7"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("ja;q=0"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::Ja.t("nav.chat"), "チャット");
        assert_eq!(Lang::En.fmt("chat.messages", &[("n", "3")]), "3 messages");
        let json: serde_json::Value = serde_json::from_str(&Lang::Ja.json()).expect("json");
        assert_eq!(json["chat.stop"], "停止");
    }
}
