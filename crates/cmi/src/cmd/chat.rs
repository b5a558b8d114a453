//! `cmi chat`: a tool-using chat in the terminal (streamed text, dimmed reasoning, tool calls with input and
//! result), one-shot answers for scripts (`-p`), Converse events as JSON lines (`--json`), saved and resumable
//! sessions; Ctrl-C cancels the turn and keeps the session.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use converse_agent::invoke::InvokeBackend;
use converse_agent::session::Session;
use converse_agent::tools::{Approver, ToolSet, Workspace};
use converse_agent::{Agent, AgentConfig, AgentEvent, Api, Message, RetryPolicy, TurnOutcome};
use model_registry::{Availability, Registry, ResolvedModel};
use tokio::sync::{Mutex, mpsc};

use crate::ctx::Ctx;
use crate::env;

/// Arguments of `cmi chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Model: a registry name (`cmi models list`), a model ID or an ARN. Defaults to the resumed session's model, or
    /// the most recently added user model.
    #[arg(long, short = 'm')]
    model: Option<String>,
    /// Answer this prompt once and exit (for scripts).
    #[arg(long, short = 'p')]
    prompt: Option<String>,
    /// Print the Converse stream events (and tool results) as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Resume a saved session: the latest, or the given ID.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    resume: Option<String>,
    /// Run commands the model asks for without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Directory the file tools and commands are confined to.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// How long to keep retrying a cold imported model (ModelNotReadyException): `90s`, `10m`, `1h`.
    #[arg(long, default_value = DEFAULT_COLD_START, value_parser = super::parse_duration)]
    cold_start_timeout: Duration,
    /// Offer no tools to the model.
    #[arg(long)]
    no_tools: bool,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// maxTokens per model call (at most the model's `maxTokensLimit`).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Commands (program names) `run_command` may run without asking.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_ALLOW)]
    allow: Vec<String>,
    /// Sampling temperature (0 = greedy); the model's default when not given.
    #[arg(long)]
    temperature: Option<f32>,
    /// Converse `toolChoice` for the first model call of a turn: `auto`, `any` (the model must call a tool) or a
    /// tool's name.
    #[arg(long, value_name = "auto|any|TOOL")]
    tool_choice: Option<String>,
    /// Model calls allowed per turn.
    #[arg(long, default_value_t = 25)]
    max_steps: usize,
    /// Offer the tools of the MCP servers in this file beside the built-ins (the `mcpServers` JSON of Claude Desktop
    /// and Bedrock Engineer: stdio servers with `command`/`args`/`env`, Streamable HTTP servers with `url`/`headers`).
    /// Their tools are named `<server>__<tool>`.
    #[arg(long, value_name = "FILE")]
    mcp_config: Option<PathBuf>,
    /// How long one MCP tool call may take before the model is told it timed out.
    #[arg(long, default_value = "120s", value_parser = super::parse_duration)]
    mcp_timeout: Duration,
}

/// Commands `run_command` runs without asking, unless `--allow` says otherwise (the web chat uses the same list).
pub(crate) const DEFAULT_ALLOW: &str = "ls,cat,pwd,echo,head,tail,wc,grep,find";
/// How long a cold model is retried, unless `--cold-start-timeout` says otherwise.
pub(crate) const DEFAULT_COLD_START: &str = "10m";

/// An agent for `model` as `cmi chat` makes one with its defaults: the built-in tools confined to `workspace`,
/// `approver` asked before a command outside [`DEFAULT_ALLOW`] runs. The web chat's agents are made here.
pub(crate) async fn default_agent(ctx: &Ctx, model: &str, workspace: &Path, approver: Approver) -> Result<Agent> {
    let registry_file = ctx.paths.registry_file();
    let registry = super::models::load(&registry_file)?;
    let workspace =
        Workspace::new(workspace).with_context(|| format!("workspace directory {}", workspace.display()))?;
    let target = ctx.aws().await?;
    let resolved = registry.resolve(model, &target.region)?;
    let client = aws_sdk_bedrockruntime::Client::new(&target.sdk);
    let mut config = AgentConfig::new(resolved.model_id.clone(), resolved.entry.clone());
    config.retry = RetryPolicy {
        cold_start_timeout: super::parse_duration(DEFAULT_COLD_START).map_err(anyhow::Error::msg)?,
        ..RetryPolicy::default()
    };
    let allow = DEFAULT_ALLOW.split(',').map(str::to_string).collect();
    let tools = ToolSet::builtin(workspace, approver, allow, false);
    agent_on(&client, config, tools, &resolved, ctx, &target).await
}

/// The agent on `client`, remembering a refusal to stream with tools in the registry, and on InvokeModel with the
/// model's own template when the entry has no Converse.
async fn agent_on(
    client: &aws_sdk_bedrockruntime::Client,
    config: AgentConfig,
    tools: ToolSet,
    resolved: &ResolvedModel,
    ctx: &Ctx,
    target: &crate::ctx::AwsTarget,
) -> Result<Agent> {
    let mut agent = Agent::new(client, config, tools).on_streaming_refused(remember_refusal(
        ctx.paths.registry_file(),
        resolved.clone(),
        target.region.clone(),
    ));
    if !resolved.entry.uses_converse() {
        let backend = invoke_backend(resolved, ctx, target).await?;
        agent = agent.with_invoke(backend);
    }
    Ok(agent)
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let registry_file = ctx.paths.registry_file();
    let registry = super::models::load(&registry_file)?;
    let sessions_dir = ctx.paths.config_dir.join("sessions");

    // Validate before any network: session, model name, workspace.
    let mut session = match &args.resume {
        None => None,
        Some(id) => {
            let path = if id == "latest" {
                Session::latest(&sessions_dir)?.context("no saved session to resume")?
            } else {
                sessions_dir.join(format!("{id}.jsonl"))
            };
            Some(replay(&path).with_context(|| format!("resuming {}", path.display()))?)
        }
    };
    let model_name = match (&args.model, &session) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) if !s.model.is_empty() => s.model.clone(),
        _ => registry.user_entries().last().map(|e| e.name.clone()).context(
            "no model given\n\nhint: pass --model NAME (see `cmi models list`), or import one with `cmi import`",
        )?,
    };
    let workspace =
        Workspace::new(&args.workspace).with_context(|| format!("workspace directory {}", args.workspace.display()))?;
    let mcp_config = match &args.mcp_config {
        Some(file) if !args.no_tools => Some(mcp_tools::McpConfig::load(file)?),
        _ => None,
    };

    let target = ctx.aws().await?;
    let resolved = registry.resolve(&model_name, &target.region)?;
    let client = aws_sdk_bedrockruntime::Client::new(&target.sdk);

    let mut config = AgentConfig::new(resolved.model_id.clone(), resolved.entry.clone());
    config.system = args.system.clone();
    config.max_tokens = args.max_tokens;
    config.max_steps = args.max_steps;
    config.use_tools = !args.no_tools;
    config.first_tool_choice = args.tool_choice.clone();
    config.temperature = args.temperature;
    config.retry = RetryPolicy {
        cold_start_timeout: args.cold_start_timeout,
        ..RetryPolicy::default()
    };

    let interactive = args.prompt.is_none() && std::io::stdin().is_terminal();
    // The chat reads stdin when it loops over lines, or to ask before running a command.
    let input = (args.prompt.is_none() || std::io::stdin().is_terminal()).then(Input::spawn);
    let approver = approver(args.yes, input.clone());
    let mut tools = if args.no_tools {
        ToolSet::new()
    } else {
        ToolSet::builtin(workspace, approver, args.allow.clone(), args.yes)
    };
    let mcp = match &mcp_config {
        Some(config) => Some(connect_mcp(config, &mut tools, args.mcp_timeout, args.json).await),
        None => None,
    };
    let mut agent = agent_on(&client, config, tools, &resolved, ctx, &target).await?;

    let mut session = match session.take() {
        Some(s) => s,
        None => Session::create(&sessions_dir, &model_name)?,
    };
    let mut history = session.messages.clone();
    let mut ui = Ui::new(args.json);
    if !args.json {
        eprintln!(
            "{} · {} · session {}{}",
            resolved.entry.name,
            resolved.model_id,
            session.id,
            if history.is_empty() {
                String::new()
            } else {
                format!(" ({} resumed)", messages(history.len()))
            }
        );
    }

    if let Some(p) = &args.prompt {
        let ok = turn(&mut agent, &mut history, &mut session, &mut ui, p).await?;
        drop(agent);
        if let Some(m) = mcp {
            m.shutdown().await;
        }
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) });
    }
    // Present whenever no prompt was given (see above).
    let input = input.context("internal: no input reader")?;
    if interactive && !args.json {
        eprintln!("type a message; /help lists commands; Ctrl-C cancels a turn; Ctrl-C or Ctrl-D here leaves");
    }
    loop {
        if interactive {
            eprint!("\n> ");
            let _ = std::io::stderr().flush();
        }
        // Ctrl-C at the prompt leaves, as Ctrl-D does.
        let line = tokio::select! {
            l = input.line() => l.transpose().context("reading stdin")?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(cmd) = line.strip_prefix('/') {
            match slash(cmd, &agent, &session, &history) {
                Slash::Exit => break,
                Slash::Shown => continue,
            }
        }
        turn(&mut agent, &mut history, &mut session, &mut ui, line).await?;
    }
    if !args.json {
        eprintln!(
            "\nsession saved: {} (resume with `cmi chat --resume {}`)",
            session.path().display(),
            session.id
        );
    }
    drop(agent);
    if let Some(m) = mcp {
        m.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the MCP servers of `config` and adds their tools to `tools`; says which came up (and why others did not).
async fn connect_mcp(
    config: &mcp_tools::McpConfig,
    tools: &mut ToolSet,
    call_timeout: Duration,
    json: bool,
) -> mcp_tools::McpServers {
    let reserved: Vec<String> = tools.iter().map(|t| t.name().to_string()).collect();
    let reserved: Vec<&str> = reserved.iter().map(String::as_str).collect();
    let timeouts = mcp_tools::Timeouts {
        call: call_timeout,
        ..mcp_tools::Timeouts::default()
    };
    let servers = mcp_tools::McpServers::connect(config, timeouts, &reserved).await;
    for t in servers.tools() {
        tools.add(t.clone());
    }
    if !json {
        for (name, n) in servers.connected() {
            eprintln!("mcp: `{name}` offers {n} tool{}", if n == 1 { "" } else { "s" });
        }
    }
    for (name, why) in &servers.failed {
        eprintln!("warning: MCP server `{name}` is left out: {why}");
    }
    servers
}

/// `1 message`, `3 messages`.
fn messages(n: usize) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

/// What a slash command asks the loop to do.
enum Slash {
    Exit,
    Shown,
}

/// The chat's own commands (`/help`); anything after the `/`.
fn slash(cmd: &str, agent: &Agent, session: &Session, history: &[Message]) -> Slash {
    let mut words = cmd.split_whitespace();
    match words.next().unwrap_or_default() {
        "exit" | "quit" | "q" => return Slash::Exit,
        "help" | "?" => eprintln!(
            "/help      this list\n\
             /session   the session file, its ID and how to resume it\n\
             /model     the model, its ID and the API used\n\
             /tools     the tools offered to the model\n\
             /exit      leave (Ctrl-D or Ctrl-C at the prompt too; Ctrl-C during an answer cancels it)"
        ),
        "session" => eprintln!(
            "session {} · {} · {}\nresume with `cmi chat --resume {}`",
            session.id,
            messages(history.len()),
            session.path().display(),
            session.id
        ),
        "model" => {
            let c = agent.config();
            eprintln!(
                "{} · {} · {}",
                c.entry.name,
                c.model_id,
                if !c.entry.uses_converse() {
                    "InvokeModel with the model's own chat template"
                } else if c.use_tools && c.entry.tool_use && !agent.streams_with_tools() {
                    "Converse (no streaming with tools), shown as a stream"
                } else {
                    "ConverseStream"
                }
            )
        }
        "tools" => {
            let names: Vec<&str> = agent.tools().iter().map(|t| t.name()).collect();
            if names.is_empty() || !agent.config().use_tools {
                eprintln!("no tools");
            } else {
                eprintln!("{}", names.join(", "));
            }
        }
        other => eprintln!("unknown command `/{other}`; /help lists the commands"),
    }
    Slash::Shown
}

/// Lines from stdin, read on a thread of their own: a blocking read on the runtime would keep the process from exiting
/// after Ctrl-C at the prompt (the runtime waits for its blocking tasks), and the prompt and the command approval
/// share one reader so that neither steals the other's line.
///
/// There is one reader for the whole process, however many chats it runs: `cmi quickstart` runs the demo turn and
/// then the interactive chat, and a reader left behind by the first chat, blocked in its read, took the first line
/// typed at the second one's prompt (or its first Ctrl-D) and dropped it.
#[derive(Clone)]
struct Input(Arc<Mutex<mpsc::UnboundedReceiver<std::io::Result<String>>>>);

impl Input {
    /// The process's stdin reader, started on first use.
    fn spawn() -> Input {
        static STDIN: std::sync::OnceLock<Input> = std::sync::OnceLock::new();
        STDIN.get_or_init(Input::start).clone()
    }

    fn start() -> Input {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = String::new();
                match std::io::BufRead::read_line(&mut stdin, &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if tx.send(Ok(line)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        Input(Arc::new(Mutex::new(rx)))
    }

    /// The next line; `None` at end of input.
    async fn line(&self) -> Option<std::io::Result<String>> {
        self.0.lock().await.recv().await
    }
}

/// One turn, cancellable with Ctrl-C. Returns whether it ended without error.
async fn turn(
    agent: &mut Agent,
    history: &mut Vec<Message>,
    session: &mut Session,
    ui: &mut Ui,
    text: &str,
) -> Result<bool> {
    let mut save_error = None;
    let outcome = {
        let mut emit = |e: AgentEvent| {
            if let Err(err) = session.record(&e) {
                save_error.get_or_insert(err);
            }
            ui.show(&e);
        };
        let fut = agent.run_turn(history, Message::user(text), &mut emit);
        // Ctrl-C first: its listener is in place before the turn shows anything a person could react to.
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => None,
            r = fut => Some(r),
        }
    };
    if let Some(e) = save_error {
        return Err(e).context("saving the session");
    }
    ui.end_line();
    match outcome {
        None => {
            session.cancelled()?;
            // Go on from what a resume sees: the cancelled question, the calls and results it got to, and the text
            // shown so far as an interrupted answer.
            *session = replay(session.path())?;
            *history = session.messages.clone();
            eprintln!("[cancelled — the session is kept]");
            Ok(false)
        }
        Some(Ok(outcome)) => {
            if let Some(note) = end_note(&outcome).filter(|_| !ui.json) {
                eprintln!("{note}");
            }
            Ok(true)
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            Ok(false)
        }
    }
}

/// What to say when a turn ends in a way the answer alone does not show: cut off at the output limit, or with no
/// answer text at all (a model that only reasoned, or stopped at once).
fn end_note(outcome: &TurnOutcome) -> Option<String> {
    if outcome.stop_reason == "max_tokens" {
        Some("[cut off at the output limit: --max-tokens raises it]".into())
    } else if outcome.text.trim().is_empty() {
        Some(format!(
            "[the model ended its turn without answer text (stop reason {})]",
            outcome.stop_reason
        ))
    } else {
        None
    }
}

/// Opens a session file to go on with it ([`Session::resume`]: an interrupted answer is kept as a message).
fn replay(path: &Path) -> Result<Session> {
    Ok(Session::resume(path)?)
}

/// Asks on the terminal before running a command (declines when there is no terminal to ask on).
fn approver(yes: bool, input: Option<Input>) -> Approver {
    Arc::new(move |cmd: String| {
        let input = input.clone();
        Box::pin(async move {
            if yes {
                return true;
            }
            let Some(input) = input.filter(|_| std::io::stdin().is_terminal()) else {
                eprintln!("[declined `{cmd}`: no terminal to ask on; pass --yes or --allow]");
                return false;
            };
            eprint!("\nrun `{cmd}`? [y/N] ");
            let _ = std::io::stderr().flush();
            matches!(input.line().await, Some(Ok(answer)) if matches!(answer.trim(), "y" | "Y" | "yes"))
        })
    })
}

/// Saves `supportsStreamingToolUse: false` for the model when ConverseStream refuses tools.
fn remember_refusal(file: PathBuf, resolved: ResolvedModel, region: String) -> converse_agent::StreamingRefused {
    Arc::new(move |_model_id: &str| {
        let result = (|| -> Result<()> {
            let mut reg = Registry::load(&file)?;
            let mut e = match reg.find(&resolved.entry.name).or_else(|| reg.find(&resolved.model_id)) {
                Some(e) => e.clone(),
                None if resolved.entry.is_arn() => {
                    let mut e = resolved.entry.clone();
                    e.availability = Some(Availability {
                        base: vec![region.clone()],
                    });
                    e
                }
                None => return Ok(()),
            };
            e.supports_streaming_tool_use = Some(false);
            reg.upsert(e)?;
            reg.save()?;
            Ok(())
        })();
        match result {
            Ok(()) => eprintln!(
                "\nnote: this model does not stream with tools; using non-streaming Converse and saved `supportsStreamingToolUse: false` to {}",
                file.display()
            ),
            Err(e) => eprintln!("\nwarning: could not save `supportsStreamingToolUse: false`: {e:#}"),
        }
    })
}

/// The InvokeModel backend: the chat template of the folder the import used (a local path, or an `s3://` prefix whose
/// template files are fetched into the cache).
async fn invoke_backend(resolved: &ResolvedModel, ctx: &Ctx, target: &crate::ctx::AwsTarget) -> Result<InvokeBackend> {
    let source = resolved.entry.model_source.clone().with_context(|| {
        format!(
            "`{}` has no Converse support and no `modelSource` to read its chat template from\n\nhint: `cmi models add` it with --model-source DIR (the folder you imported)",
            resolved.entry.name
        )
    })?;
    let dir = if let Some(rest) = source.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let dir = ctx
            .paths
            .cache_dir
            .join("templates")
            .join(bucket)
            .join(prefix.trim_end_matches('/'));
        std::fs::create_dir_all(&dir)?;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&target.sdk)
                .force_path_style(true)
                .build(),
        );
        for name in [
            "tokenizer_config.json",
            "chat_template.jinja",
            "chat_template.json",
            "config.json",
        ] {
            let key = format!("{}/{name}", prefix.trim_end_matches('/'))
                .trim_start_matches('/')
                .to_string();
            if let Ok(obj) = s3.get_object().bucket(bucket).key(&key).send().await {
                let bytes = obj
                    .body
                    .collect()
                    .await
                    .context("reading the template from S3")?
                    .into_bytes();
                std::fs::write(dir.join(name), bytes)?;
            }
        }
        dir
    } else {
        PathBuf::from(source)
    };
    InvokeBackend::from_model_dir(Path::new(&dir))
        .with_context(|| format!("loading the chat template from {}", dir.display()))
}

/// Renders agent events on the terminal (or as JSON lines).
struct Ui {
    json: bool,
    color: bool,
    /// What the last output was, to place separators.
    mode: Mode,
    /// A `\r` status line is showing on stderr.
    status: bool,
    /// stderr is a terminal: status lines redraw in place (else they are plain lines, printed now and then).
    status_tty: bool,
    /// The last warming-up attempt printed as a plain line (the agent reports each attempt once a second).
    warm_attempt: u32,
}

#[derive(PartialEq)]
enum Mode {
    None,
    Text,
    Reasoning,
}

impl Ui {
    fn new(json: bool) -> Ui {
        Ui {
            json,
            color: !env::no_color() && std::io::stdout().is_terminal(),
            mode: Mode::None,
            status: false,
            status_tty: !env::no_color() && std::io::stderr().is_terminal(),
            warm_attempt: 0,
        }
    }

    fn clear_status(&mut self) {
        if self.status {
            eprint!("\r\x1b[2K");
            self.status = false;
        }
    }

    fn end_line(&mut self) {
        self.clear_status();
        if self.mode != Mode::None && !self.json {
            if self.color {
                print!("\x1b[0m");
            }
            println!();
        }
        self.mode = Mode::None;
        let _ = std::io::stdout().flush();
    }

    fn show(&mut self, e: &AgentEvent) {
        if self.json {
            let line = match e {
                AgentEvent::Stream(s) => serde_json::to_string(s).ok(),
                AgentEvent::ToolResult { id, output, is_error, .. } => Some(
                    serde_json::json!({"toolResult": {"toolUseId": id, "status": if *is_error { "error" } else { "success" }, "content": [{"text": output}]}})
                        .to_string(),
                ),
                _ => None,
            };
            if let Some(l) = line {
                println!("{l}");
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        match e {
            AgentEvent::Text(t) => {
                self.clear_status();
                if self.mode == Mode::Reasoning {
                    let _ = write!(out, "{}\n\n", if self.color { "\x1b[0m" } else { "" });
                }
                self.mode = Mode::Text;
                let _ = write!(out, "{t}");
            }
            AgentEvent::Reasoning(t) => {
                self.clear_status();
                if self.mode != Mode::Reasoning {
                    let _ = write!(out, "{}", if self.color { "\x1b[2m" } else { "[thinking] " });
                }
                self.mode = Mode::Reasoning;
                let _ = write!(out, "{t}");
            }
            AgentEvent::ToolUse { name, input, .. } => {
                drop(out);
                self.end_line();
                println!("→ {name} {input}");
            }
            AgentEvent::ToolResult { output, is_error, .. } => {
                let first: Vec<&str> = output.lines().take(6).collect();
                let more = output.lines().count().saturating_sub(6);
                println!("{} {}", if *is_error { "✗" } else { "←" }, first.join("\n  "));
                if more > 0 {
                    println!("  … {more} more lines");
                }
            }
            AgentEvent::WarmingUp {
                elapsed,
                timeout,
                attempt,
            } => {
                let s = elapsed.as_secs();
                let line = format!(
                    "model is warming up (ModelNotReadyException): {}:{:02} elapsed, giving up after {}:{:02}, attempt {attempt}",
                    s / 60,
                    s % 60,
                    timeout.as_secs() / 60,
                    timeout.as_secs() % 60
                );
                if self.status_tty {
                    eprint!("\r\x1b[2K{line}");
                    self.status = true;
                } else if *attempt != self.warm_attempt && (*attempt == 1 || attempt % 10 == 0) {
                    self.warm_attempt = *attempt;
                    eprintln!("{line}");
                }
            }
            // Until the first output, say that the model is at work: without streaming (tools on a model that does not
            // stream with them) the whole answer takes as long as it takes to write.
            AgentEvent::Request { api, .. } if self.status_tty && !self.status && self.mode == Mode::None => {
                eprint!(
                    "\r\x1b[2K{}",
                    match api {
                        Api::ConverseStream => "waiting for the model…",
                        Api::Converse => "waiting for the whole answer (this model does not stream with tools)…",
                        Api::InvokeModel => "waiting for the whole answer (InvokeModel, not streamed)…",
                    }
                );
                self.status = true;
            }
            AgentEvent::Retrying { code, attempt, delay } => {
                self.clear_status();
                eprintln!("[{code}: retry {attempt} in {:.1}s]", delay.as_secs_f64());
            }
            AgentEvent::SwitchedToNonStreaming { .. } => {}
            AgentEvent::ContextTrimmed { left_out } => {
                self.clear_status();
                eprintln!(
                    "[the conversation is longer than the model's context: the oldest {left_out} messages are no longer sent (the session keeps them)]"
                );
            }
            AgentEvent::TruncatedToolCall { name } => {
                drop(out);
                self.end_line();
                let call = if name.is_empty() {
                    "a tool call".to_string()
                } else {
                    format!("the call of `{name}`")
                };
                eprintln!("[{call} was cut off at max_tokens; asking the model for smaller calls]");
            }
            _ => {}
        }
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::{TurnOutcome, end_note, replay};
    use converse_agent::session::Session;
    use converse_agent::{AgentEvent, Message, Role};

    #[test]
    fn a_turn_cut_off_or_without_text_says_so() {
        let outcome = |stop: &str, text: &str| TurnOutcome {
            stop_reason: stop.into(),
            steps: 1,
            text: text.into(),
        };
        assert_eq!(end_note(&outcome("end_turn", "Paris.")), None);
        assert_eq!(end_note(&outcome("stop_sequence", "Paris.")), None);
        let cut = end_note(&outcome("max_tokens", "Once upon a")).expect("a note");
        assert!(cut.contains("--max-tokens"), "{cut}");
        assert_eq!(end_note(&outcome("max_tokens", "")), Some(cut));
        let empty = end_note(&outcome("end_turn", " \n")).expect("a note");
        assert!(
            empty.contains("without answer text") && empty.contains("end_turn"),
            "{empty}"
        );
    }

    #[test]
    fn text_shown_before_a_cancel_stays_in_the_history_after_later_turns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Session::create(dir.path(), "tiny").expect("session");
        let path = s.path().to_path_buf();
        for e in [
            // A turn taken out of the history first (too long for the model), which must not count as saved.
            AgentEvent::Message(Message::user("far too long")),
            AgentEvent::Withdrawn { messages: 1 },
            AgentEvent::Message(Message::user("tell me a story")),
            AgentEvent::Text("Once upon".into()),
            AgentEvent::Text(" a time".into()),
        ] {
            s.record(&e).expect("record");
        }
        s.cancelled().expect("cancelled");
        drop(s);

        let mut s = replay(&path).expect("replay");
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.messages[1].role, Role::Assistant);
        assert!(
            s.messages[1].text().starts_with("Once upon a time"),
            "{:?}",
            s.messages[1]
        );
        // Replaying again adds nothing: the interrupted answer is a saved message now.
        assert_eq!(replay(&path).expect("replay again").messages.len(), 2);

        s.record(&AgentEvent::Message(Message::user("and then?")))
            .expect("record");
        drop(s);
        let resumed = Session::open(&path).expect("open");
        assert_eq!(resumed.messages.len(), 3, "{:?}", resumed.messages);
        assert!(resumed.messages[1].text().starts_with("Once upon a time"));
    }
}
