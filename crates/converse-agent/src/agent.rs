//! The tool loop: one user turn → model calls (streamed, or non-streaming presented as a stream) → tool calls →
//! results → … until the model stops, the step limit, or an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::types as sdk;
use model_registry::ModelEntry;
use serde_json::Value;

use crate::doc::json_to_doc;
use crate::events::{AgentEvent, Api, BlockStart, Delta, Metrics, ReasoningDelta, StreamEvent, Usage};
use crate::message::{self, Block, Message, Role};
use crate::retry::{Decision, Failure, RetryPolicy, RetryState, equal_jitter};
use crate::tools::ToolSet;
use crate::{Error, invoke};
use crate::{Piece, ThinkSplitter};

/// What the agent needs to know about the model and the turn.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The `modelId` to send (already prefixed or an ARN).
    pub model_id: String,
    /// The registry entry (tool use, streaming with tools, limits, Converse support).
    pub entry: ModelEntry,
    /// System prompt.
    pub system: Option<String>,
    /// `maxTokens` per call; defaults to the entry's `maxTokensLimit` (and never exceeds it).
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Model calls per user turn.
    pub max_steps: usize,
    /// Offer tools (when the entry allows tool use).
    pub use_tools: bool,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The prompt leaves the model inside `<think>` (DeepSeek-R1 style), so output starts as reasoning.
    pub starts_in_reasoning: bool,
    /// Token budget for the history sent (defaults from the entry's `contextLength`).
    pub history_budget: Option<usize>,
    /// Converse `toolChoice` for the first model call of each turn: `any` (some tool must be called), `auto`, or a
    /// tool's name (`{tool: {name}}`); later calls are `auto`.
    pub first_tool_choice: Option<String>,
}

impl AgentConfig {
    /// Defaults: tools on, 25 steps, the default retry policy.
    pub fn new(model_id: impl Into<String>, entry: ModelEntry) -> AgentConfig {
        AgentConfig {
            model_id: model_id.into(),
            entry,
            system: None,
            max_tokens: None,
            temperature: None,
            max_steps: 25,
            use_tools: true,
            retry: RetryPolicy::default(),
            starts_in_reasoning: false,
            history_budget: None,
            first_tool_choice: None,
        }
    }

    fn max_tokens(&self) -> u32 {
        self.max_tokens
            .unwrap_or(self.entry.max_tokens_limit)
            .min(self.entry.max_tokens_limit)
            .max(1)
    }
}

/// Called with the model ID when ConverseStream refuses tools, so the caller can remember it in the registry.
pub type StreamingRefused = Arc<dyn Fn(&str) + Send + Sync>;

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    /// The last stop reason.
    pub stop_reason: String,
    /// Model calls made.
    pub steps: usize,
    /// The final answer text.
    pub text: String,
}

/// The agent: a Bedrock runtime client, a model, tools.
pub struct Agent {
    client: Client,
    config: AgentConfig,
    tools: ToolSet,
    /// Whether ConverseStream may carry tools for this model; starts from the entry, flips on refusal.
    stream_tools: bool,
    on_streaming_refused: Option<StreamingRefused>,
    /// For models without Converse: the model's chat template.
    invoke: Option<invoke::InvokeBackend>,
    jitter: fn(Duration) -> Duration,
    /// The history budget (estimated tokens) learned from the model refusing a prompt as too long: the estimate
    /// counts bytes, and a model's tokenizer can need several times more tokens for the same text.
    learned_budget: Option<usize>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("model_id", &self.config.model_id)
            .field("tools", &self.tools)
            .finish()
    }
}

impl Agent {
    /// An agent on `client`. The client's own retries are switched off: the agent's [`RetryPolicy`] decides.
    pub fn new(client: &Client, config: AgentConfig, tools: ToolSet) -> Agent {
        let conf = client
            .config()
            .to_builder()
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .build();
        Agent {
            client: Client::from_conf(conf),
            stream_tools: config.entry.streams_with_tools(),
            config,
            tools,
            on_streaming_refused: None,
            invoke: None,
            jitter: equal_jitter,
            learned_budget: None,
        }
    }

    /// Sets the callback told when ConverseStream refuses tools for this model.
    pub fn on_streaming_refused(mut self, f: StreamingRefused) -> Agent {
        self.on_streaming_refused = Some(f);
        self
    }

    /// Uses InvokeModel with this backend (for models whose entry says `instructSupported: false`).
    pub fn with_invoke(mut self, backend: invoke::InvokeBackend) -> Agent {
        self.config.starts_in_reasoning |= backend.starts_in_reasoning();
        self.invoke = Some(backend);
        self
    }

    /// Replaces the jitter function (tests use a fixed one).
    pub fn with_jitter(mut self, f: fn(Duration) -> Duration) -> Agent {
        self.jitter = f;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Sets the `toolChoice` of each turn's first model call from now on (`any`, `auto` or a tool's name; `None`:
    /// the model decides), as [`AgentConfig::first_tool_choice`].
    pub fn set_first_tool_choice(&mut self, choice: Option<String>) {
        self.config.first_tool_choice = choice;
    }

    /// Sets `maxTokens` per call from now on (`None`: the entry's `maxTokensLimit`, which also caps it).
    pub fn set_max_tokens(&mut self, max_tokens: Option<u32>) {
        self.config.max_tokens = max_tokens;
    }

    /// Whether ConverseStream is used when tools are on (false after a refusal, or per the entry).
    pub fn streams_with_tools(&self) -> bool {
        self.stream_tools
    }

    /// The tools offered to the model (when tools are on).
    pub fn tools(&self) -> &ToolSet {
        &self.tools
    }

    /// The history as it is sent: normalised, the oldest exchanges left out to fit the budget (the entry's
    /// `contextLength` less `maxTokens`, or what the model's refusals taught), tool blocks flattened when tools are off;
    /// and how many messages were left out.
    fn messages_to_send(&self, history: &[Message]) -> (Vec<Message>, usize) {
        let mut send = message::normalize(history, self.config.entry.supports_thinking == Some(true));
        let configured = self.config.history_budget.or_else(|| {
            self.config
                .entry
                .context_length
                .map(|c| (c as usize).saturating_sub(self.config.max_tokens() as usize))
        });
        let budget = match (configured, self.learned_budget) {
            (Some(c), Some(l)) => Some(c.min(l)),
            (c, l) => c.or(l),
        };
        let dropped = budget.map_or(0, |b| message::trim_to_budget(&mut send, b));
        if dropped > 0 {
            tracing::info!(dropped, budget, "left out the oldest messages to fit the context");
        }
        if !self.tools_active() {
            send = flatten_tool_blocks(send);
        }
        (send, dropped)
    }

    fn tools_active(&self) -> bool {
        self.config.use_tools && self.config.entry.tool_use && !self.tools.is_empty()
    }

    /// Runs one user turn: appends `user` to `history`, then calls the model and runs tools until the model stops.
    /// Every message added to `history` is also emitted ([`AgentEvent::Message`]) so the caller can save it at once.
    /// Dropping the future cancels the turn; the history then holds what completed, and [`message::normalize`]
    /// answers any unanswered tool call on the next send.
    pub async fn run_turn(
        &mut self,
        history: &mut Vec<Message>,
        user: Message,
        emit: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<TurnOutcome, Error> {
        let start = history.len();
        history.push(user.clone());
        emit(AgentEvent::Message(user));
        let mut truncated_before = false;
        for step in 1..=self.config.max_steps {
            let (mut send, _) = self.messages_to_send(history);
            let before = self.learned_budget;
            let out = loop {
                let mut shown = false;
                let r = self
                    .call_model(step, &send, &mut |e| {
                        shown |= matches!(e, AgentEvent::Text(_) | AgentEvent::Reasoning(_));
                        emit(e)
                    })
                    .await;
                match r {
                    // Too long for the model after all (refusals come before any output): leave out older
                    // exchanges until it fits.
                    Err(e) if e.is_context_refusal() && !shown => {
                        let estimate = send.iter().map(message::estimate_tokens).sum::<usize>();
                        self.learned_budget = Some(smaller_budget(&e, estimate, self.config.max_tokens()));
                        let (shorter, left_out) = self.messages_to_send(history);
                        if shorter.len() < send.len() {
                            emit(AgentEvent::ContextTrimmed { left_out });
                            send = shorter;
                            continue;
                        }
                        // Nothing older is left to leave out: this turn alone does not fit. Take it out of the
                        // history, or every later question, merged with it, would be refused too.
                        self.learned_budget = before;
                        let withdrawn = history.len() - start;
                        history.truncate(start);
                        emit(AgentEvent::Withdrawn { messages: withdrawn });
                        return Err(e);
                    }
                    r => break r?,
                }
            };
            if !out.message.content.is_empty() {
                history.push(out.message.clone());
                emit(AgentEvent::Message(out.message.clone()));
            }
            let calls: Vec<(String, String, Value)> = out
                .message
                .tool_uses()
                .map(|(i, n, v)| (i.to_string(), n.to_string(), v.clone()))
                .collect();
            let mut results = vec![];
            for (id, name, input) in &calls {
                emit(AgentEvent::ToolUse {
                    id: id.clone(),
                    name: name.clone(),
                    input: input.clone(),
                });
                let r = self.tools.call(name, input).await;
                let (output, is_error) = match r {
                    Ok(s) => (s, false),
                    Err(s) => (s, true),
                };
                emit(AgentEvent::ToolResult {
                    id: id.clone(),
                    name: name.clone(),
                    output: output.clone(),
                    is_error,
                });
                results.push(Block::ToolResult {
                    tool_use_id: id.clone(),
                    content: output,
                    is_error,
                });
            }
            // A call cut off at max_tokens: as a toolUse block whose input is not whole, or (how imported models
            // return it) as text that opens a call.
            let truncated = out.truncated_tool.clone().or_else(|| {
                (self.tools_active() && out.stop_reason == "max_tokens" && calls.is_empty())
                    .then(|| {
                        let tools: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
                        message::cut_off_tool_call(&out.message.text(), &tools)
                    })
                    .flatten()
            });
            if let Some(name) = truncated {
                if truncated_before {
                    return Err(Error::TruncatedToolCall {
                        name,
                        max_tokens: self.config.max_tokens(),
                    });
                }
                truncated_before = true;
                emit(AgentEvent::TruncatedToolCall { name: name.clone() });
                let call = if name.is_empty() {
                    "Your tool call".to_string()
                } else {
                    format!("Your call of the tool `{name}`")
                };
                results.push(Block::Text(format!(
                    "{call} was cut off at the output limit ({} tokens), so it was not run. Make smaller tool calls, for example write a long file in several parts.",
                    self.config.max_tokens()
                )));
            } else {
                truncated_before = false;
            }
            if results.is_empty() {
                let text = out.message.text();
                emit(AgentEvent::TurnEnd {
                    stop_reason: out.stop_reason.clone(),
                    steps: step,
                });
                return Ok(TurnOutcome {
                    stop_reason: out.stop_reason,
                    steps: step,
                    text,
                });
            }
            let m = Message {
                role: Role::User,
                content: results,
            };
            history.push(m.clone());
            emit(AgentEvent::Message(m));
        }
        Err(Error::StepLimit {
            steps: self.config.max_steps,
        })
    }

    /// One model call, with the streaming decision, the switch-over and the retry policy.
    async fn call_model(
        &mut self,
        step: usize,
        msgs: &[Message],
        emit: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<StepOutput, Error> {
        let tools = self.tools_active();
        let mut state = RetryState::default();
        loop {
            let api = if self.invoke.is_some() && !self.config.entry.uses_converse() {
                Api::InvokeModel
            } else if tools && !self.stream_tools {
                Api::Converse
            } else {
                Api::ConverseStream
            };
            emit(AgentEvent::Request { step, api });
            let mut asm = Assembler::new(self.config.starts_in_reasoning);
            let r = match api {
                Api::ConverseStream => self.stream_once(step, msgs, tools, &mut asm, emit).await,
                Api::Converse => self.converse_once(step, msgs, tools, &mut asm, emit).await,
                Api::InvokeModel => self.invoke_once(msgs, tools, &mut asm, emit).await,
            };
            let failure = match r {
                Ok(()) => return Ok(asm.finish(emit)),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Retryable { failure, emitted }) => {
                    if emitted {
                        // Part of the answer was shown already; a silent retry would duplicate it.
                        return Err(state.error(
                            &self.config.retry,
                            &self.config.model_id,
                            failure,
                            tokio::time::Instant::now(),
                        ));
                    }
                    failure
                }
            };
            if api == Api::ConverseStream && tools && failure.refuses_streaming_tools() {
                self.stream_tools = false;
                tracing::info!(model_id = %self.config.model_id, "ConverseStream refused tools; switching to Converse");
                emit(AgentEvent::SwitchedToNonStreaming {
                    reason: failure.message.clone(),
                });
                if let Some(cb) = &self.on_streaming_refused {
                    cb(&self.config.model_id);
                }
                continue;
            }
            let now = tokio::time::Instant::now();
            match state.decide(&self.config.retry, &failure, now, &mut |d| (self.jitter)(d)) {
                Decision::WarmUp { delay, attempt } => {
                    tracing::info!(model_id = %self.config.model_id, attempt, "model not ready; waiting");
                    // Tick the status once a second so a UI can show how long the model has been warming up.
                    let until = now + delay;
                    loop {
                        let t = tokio::time::Instant::now();
                        emit(AgentEvent::WarmingUp {
                            elapsed: state.cold_elapsed(t),
                            timeout: self.config.retry.cold_start_timeout,
                            attempt,
                        });
                        if t >= until {
                            break;
                        }
                        tokio::time::sleep((until - t).min(Duration::from_secs(1))).await;
                    }
                }
                Decision::Retry { delay, attempt } => {
                    tracing::info!(model_id = %self.config.model_id, code = %failure.code, attempt, ?delay, "retrying");
                    emit(AgentEvent::Retrying {
                        code: failure.code.clone(),
                        attempt,
                        delay,
                    });
                    tokio::time::sleep(delay).await;
                }
                Decision::Fail => {
                    return Err(state.error(
                        &self.config.retry,
                        &self.config.model_id,
                        failure,
                        tokio::time::Instant::now(),
                    ));
                }
            }
        }
    }

    fn sdk_parts(&self, msgs: &[Message], tools: bool, step: usize) -> Result<SdkParts, Error> {
        let messages = msgs.iter().map(message::to_sdk).collect::<Result<Vec<_>, _>>()?;
        let system = self
            .config
            .system
            .as_ref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| vec![sdk::SystemContentBlock::Text(s.clone())]);
        let inference = sdk::InferenceConfiguration::builder()
            .max_tokens(self.config.max_tokens() as i32)
            .set_temperature(self.config.temperature)
            .build();
        let tool_config = if tools {
            let mut specs = vec![];
            for t in self.tools.iter() {
                specs.push(sdk::Tool::ToolSpec(
                    sdk::ToolSpecification::builder()
                        .name(t.name())
                        .description(t.description())
                        .input_schema(sdk::ToolInputSchema::Json(json_to_doc(&t.input_schema())))
                        .build()
                        .map_err(|e| Error::Request { message: e.to_string() })?,
                ));
            }
            let choice = self
                .config
                .first_tool_choice
                .as_ref()
                .filter(|_| step == 1)
                .map(|choice| match choice.as_str() {
                    "any" => Ok(sdk::ToolChoice::Any(sdk::AnyToolChoice::builder().build())),
                    "auto" => Ok(sdk::ToolChoice::Auto(sdk::AutoToolChoice::builder().build())),
                    name => sdk::SpecificToolChoice::builder()
                        .name(name)
                        .build()
                        .map(sdk::ToolChoice::Tool),
                })
                .transpose()
                .map_err(|e| Error::Request { message: e.to_string() })?;
            Some(
                sdk::ToolConfiguration::builder()
                    .set_tools(Some(specs))
                    .set_tool_choice(choice)
                    .build()
                    .map_err(|e| Error::Request { message: e.to_string() })?,
            )
        } else {
            None
        };
        Ok((messages, system, inference, tool_config))
    }

    async fn stream_once(
        &self,
        step: usize,
        msgs: &[Message],
        tools: bool,
        asm: &mut Assembler,
        emit: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<(), Attempt> {
        let (messages, system, inference, tool_config) = self.sdk_parts(msgs, tools, step).map_err(Attempt::Failed)?;
        let resp = self
            .client
            .converse_stream()
            .model_id(&self.config.model_id)
            .set_messages(Some(messages))
            .set_system(system)
            .inference_config(inference)
            .set_tool_config(tool_config)
            .send()
            .await
            .map_err(|e| Attempt::retryable(Failure::from_sdk(&e), false))?;
        let mut stream = resp.stream;
        let mut emitted = false;
        loop {
            match stream.recv().await {
                Ok(Some(ev)) => {
                    if let Some(se) = from_sdk_stream(ev) {
                        emitted = true;
                        asm.on(&se, emit);
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(Attempt::retryable(Failure::from_sdk(&e), emitted)),
            }
        }
    }

    async fn converse_once(
        &self,
        step: usize,
        msgs: &[Message],
        tools: bool,
        asm: &mut Assembler,
        emit: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<(), Attempt> {
        let (messages, system, inference, tool_config) = self.sdk_parts(msgs, tools, step).map_err(Attempt::Failed)?;
        let resp = self
            .client
            .converse()
            .model_id(&self.config.model_id)
            .set_messages(Some(messages))
            .set_system(system)
            .inference_config(inference)
            .set_tool_config(tool_config)
            .send()
            .await
            .map_err(|e| Attempt::retryable(Failure::from_sdk(&e), false))?;
        let blocks: Vec<Block> = match resp.output() {
            Some(sdk::ConverseOutput::Message(m)) => m.content().iter().filter_map(message::block_from_sdk).collect(),
            _ => vec![],
        };
        let usage = resp.usage().map(|u| Usage {
            input_tokens: u.input_tokens().into(),
            output_tokens: u.output_tokens().into(),
            total_tokens: u.total_tokens().into(),
        });
        let latency = resp.metrics().map(|m| m.latency_ms()).unwrap_or_default();
        for se in synthesize(&blocks, resp.stop_reason().as_str(), usage.unwrap_or_default(), latency) {
            asm.on(&se, emit);
        }
        Ok(())
    }

    async fn invoke_once(
        &self,
        msgs: &[Message],
        tools: bool,
        asm: &mut Assembler,
        emit: &mut (dyn FnMut(AgentEvent) + Send),
    ) -> Result<(), Attempt> {
        // Present only when the agent was built with an invoke backend (checked by the caller).
        let Some(backend) = &self.invoke else {
            return Err(Attempt::Failed(Error::Invoke {
                model_id: self.config.model_id.clone(),
                message: "no chat template loaded".into(),
            }));
        };
        let tool_specs = if tools { self.tools.openai_specs() } else { vec![] };
        let body = backend
            .request_body(
                self.config.system.as_deref(),
                msgs,
                &tool_specs,
                self.config.max_tokens(),
                self.config.temperature,
            )
            .map_err(|message| {
                Attempt::Failed(Error::Invoke {
                    model_id: self.config.model_id.clone(),
                    message,
                })
            })?;
        let started = std::time::Instant::now();
        let resp = self
            .client
            .invoke_model()
            .model_id(&self.config.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(aws_smithy_types::Blob::new(body))
            .send()
            .await
            .map_err(|e| Attempt::retryable(Failure::from_sdk(&e), false))?;
        let parsed = backend.parse_response(resp.body().as_ref(), tools).map_err(|message| {
            Attempt::Failed(Error::Invoke {
                model_id: self.config.model_id.clone(),
                message,
            })
        })?;
        let latency = started.elapsed().as_millis() as i64;
        for se in synthesize(&parsed.blocks, &parsed.stop_reason, parsed.usage, latency) {
            asm.on(&se, emit);
        }
        Ok(())
    }
}

/// The request parts shared by Converse and ConverseStream: messages, system prompt, inference and tool settings.
type SdkParts = (
    Vec<sdk::Message>,
    Option<Vec<sdk::SystemContentBlock>>,
    sdk::InferenceConfiguration,
    Option<sdk::ToolConfiguration>,
);

/// The history budget (estimated tokens) to try after a refusal as too long of `estimate` estimated tokens: scaled by
/// the refusal's own figures where it gives them (the larger number what was sent, the smaller the context window,
/// as in "the prompt has 9241 tokens and the context window is 8192"), leaving room for `max_tokens` of answer; else
/// half. Always less than `estimate`.
pub(crate) fn smaller_budget(refusal: &Error, estimate: usize, max_tokens: u32) -> usize {
    let half = estimate / 2;
    let Error::Validation { message, .. } = refusal else {
        return half;
    };
    let numbers: Vec<usize> = message
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .filter(|&n| n >= 16)
        .take(2)
        .collect();
    let &[a, b] = numbers.as_slice() else {
        return half;
    };
    let (sent, window) = (a.max(b), a.min(b));
    if sent == window {
        return half;
    }
    let room = window.saturating_sub(max_tokens as usize).max(window / 2);
    let scaled = (estimate as u128 * room as u128 / sent as u128) as usize;
    scaled.min(estimate.saturating_sub(1))
}

/// Turns tool blocks into text, for sending a history with tool calls to a model without tools (Bedrock requires a
/// toolConfig whenever the history holds tool blocks).
fn flatten_tool_blocks(msgs: Vec<Message>) -> Vec<Message> {
    msgs.into_iter()
        .map(|m| Message {
            role: m.role,
            content: m
                .content
                .into_iter()
                .map(|b| match b {
                    Block::ToolUse { name, input, .. } => Block::Text(format!("[called tool {name} with {input}]")),
                    Block::ToolResult { content, is_error, .. } => Block::Text(format!(
                        "[tool {}: {content}]",
                        if is_error { "failed" } else { "result" }
                    )),
                    other => other,
                })
                .collect(),
        })
        .collect()
}

/// An attempt's failure: retryable per policy, or final.
pub(crate) enum Attempt {
    Retryable { failure: Failure, emitted: bool },
    Failed(Error),
}

impl Attempt {
    fn retryable(failure: Failure, emitted: bool) -> Attempt {
        Attempt::Retryable { failure, emitted }
    }
}

/// Maps an SDK stream event; unknown kinds are skipped.
fn from_sdk_stream(ev: sdk::ConverseStreamOutput) -> Option<StreamEvent> {
    Some(match ev {
        sdk::ConverseStreamOutput::MessageStart(m) => StreamEvent::MessageStart {
            role: m.role().as_str().to_string(),
        },
        sdk::ConverseStreamOutput::ContentBlockStart(s) => match s.start() {
            Some(sdk::ContentBlockStart::ToolUse(t)) => StreamEvent::ContentBlockStart {
                content_block_index: s.content_block_index().max(0) as usize,
                start: BlockStart::ToolUse {
                    tool_use_id: t.tool_use_id().to_string(),
                    name: t.name().to_string(),
                },
            },
            _ => return None,
        },
        sdk::ConverseStreamOutput::ContentBlockDelta(d) => {
            let delta = match d.delta()? {
                sdk::ContentBlockDelta::Text(t) => Delta::Text(t.clone()),
                sdk::ContentBlockDelta::ToolUse(t) => Delta::ToolUse {
                    input: t.input().to_string(),
                },
                sdk::ContentBlockDelta::ReasoningContent(sdk::ReasoningContentBlockDelta::Text(t)) => {
                    Delta::ReasoningContent(ReasoningDelta::Text(t.clone()))
                }
                sdk::ContentBlockDelta::ReasoningContent(sdk::ReasoningContentBlockDelta::Signature(s)) => {
                    Delta::ReasoningContent(ReasoningDelta::Signature(s.clone()))
                }
                _ => return None,
            };
            StreamEvent::ContentBlockDelta {
                content_block_index: d.content_block_index().max(0) as usize,
                delta,
            }
        }
        sdk::ConverseStreamOutput::ContentBlockStop(s) => StreamEvent::ContentBlockStop {
            content_block_index: s.content_block_index().max(0) as usize,
        },
        sdk::ConverseStreamOutput::MessageStop(s) => StreamEvent::MessageStop {
            stop_reason: s.stop_reason().as_str().to_string(),
        },
        sdk::ConverseStreamOutput::Metadata(m) => StreamEvent::Metadata {
            usage: m
                .usage()
                .map(|u| Usage {
                    input_tokens: u.input_tokens().into(),
                    output_tokens: u.output_tokens().into(),
                    total_tokens: u.total_tokens().into(),
                })
                .unwrap_or_default(),
            metrics: Metrics {
                latency_ms: m.metrics().map(|x| x.latency_ms()).unwrap_or_default(),
            },
        },
        _ => return None,
    })
}

/// Roughly how many characters go in one synthesised delta: small enough to look like streaming, large enough not
/// to flood a UI.
const CHUNK: usize = 24;

/// Splits text into chunks of about [`CHUNK`] bytes, at character boundaries, preferring to end after a space.
pub(crate) fn chunks(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = s;
    while !rest.is_empty() {
        if rest.len() <= CHUNK {
            out.push(rest);
            break;
        }
        let mut cut = CHUNK;
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        if let Some(sp) = rest[..cut].rfind(' ')
            && sp > 0
        {
            cut = sp + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// Presents a complete response as ConverseStream events: `messageStart`; per block, in order and with its own
/// index, a `contentBlockStart` for tool calls, deltas in small chunks (reasoning kept, with its signature), and
/// `contentBlockStop`; then `messageStop` and `metadata`.
pub fn synthesize(blocks: &[Block], stop_reason: &str, usage: Usage, latency_ms: i64) -> Vec<StreamEvent> {
    let mut out = vec![StreamEvent::MessageStart {
        role: "assistant".into(),
    }];
    let mut index = 0;
    for b in blocks {
        match b {
            Block::Text(t) => {
                if t.is_empty() {
                    continue;
                }
                for c in chunks(t) {
                    out.push(StreamEvent::ContentBlockDelta {
                        content_block_index: index,
                        delta: Delta::Text(c.to_string()),
                    });
                }
            }
            Block::ReasoningContent { text, signature } => {
                for c in chunks(text) {
                    out.push(StreamEvent::ContentBlockDelta {
                        content_block_index: index,
                        delta: Delta::ReasoningContent(ReasoningDelta::Text(c.to_string())),
                    });
                }
                if let Some(s) = signature {
                    out.push(StreamEvent::ContentBlockDelta {
                        content_block_index: index,
                        delta: Delta::ReasoningContent(ReasoningDelta::Signature(s.clone())),
                    });
                }
            }
            Block::ToolUse {
                tool_use_id,
                name,
                input,
            } => {
                out.push(StreamEvent::ContentBlockStart {
                    content_block_index: index,
                    start: BlockStart::ToolUse {
                        tool_use_id: tool_use_id.clone(),
                        name: name.clone(),
                    },
                });
                let json = input.to_string();
                for c in chunks(&json) {
                    out.push(StreamEvent::ContentBlockDelta {
                        content_block_index: index,
                        delta: Delta::ToolUse { input: c.to_string() },
                    });
                }
            }
            Block::ToolResult { .. } => continue,
        }
        out.push(StreamEvent::ContentBlockStop {
            content_block_index: index,
        });
        index += 1;
    }
    out.push(StreamEvent::MessageStop {
        stop_reason: stop_reason.to_string(),
    });
    out.push(StreamEvent::Metadata {
        usage,
        metrics: Metrics { latency_ms },
    });
    out
}

/// A block being assembled from deltas.
#[derive(Debug)]
enum Partial {
    /// Text, with reasoning split out of inline `<think>` tags.
    Text {
        text: String,
        reasoning: String,
    },
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    Tool {
        id: String,
        name: String,
        json: String,
    },
}

/// The result of one model call.
#[derive(Debug)]
pub(crate) struct StepOutput {
    pub(crate) message: Message,
    pub(crate) stop_reason: String,
    /// A tool call cut off at max_tokens (its name), not included in `message`.
    pub(crate) truncated_tool: Option<String>,
}

/// Folds stream events into a message, emitting the events and what a UI shows as they come.
pub(crate) struct Assembler {
    blocks: BTreeMap<usize, Partial>,
    splitter: ThinkSplitter,
    stop_reason: String,
}

impl Assembler {
    pub(crate) fn new(starts_in_reasoning: bool) -> Self {
        Assembler {
            blocks: BTreeMap::new(),
            splitter: ThinkSplitter::new(starts_in_reasoning),
            stop_reason: "end_turn".into(),
        }
    }

    pub(crate) fn on(&mut self, ev: &StreamEvent, emit: &mut (dyn FnMut(AgentEvent) + Send)) {
        emit(AgentEvent::Stream(ev.clone()));
        match ev {
            StreamEvent::ContentBlockStart {
                content_block_index,
                start: BlockStart::ToolUse { tool_use_id, name },
            } => {
                self.blocks.insert(
                    *content_block_index,
                    Partial::Tool {
                        id: tool_use_id.clone(),
                        name: name.clone(),
                        json: String::new(),
                    },
                );
            }
            StreamEvent::ContentBlockDelta {
                content_block_index,
                delta,
            } => {
                let i = *content_block_index;
                match delta {
                    Delta::Text(t) => {
                        let pieces = self.splitter.feed(t);
                        self.add_text(i, pieces, emit);
                    }
                    Delta::ToolUse { input } => {
                        if let Some(Partial::Tool { json, .. }) = self.blocks.get_mut(&i) {
                            json.push_str(input);
                        }
                    }
                    Delta::ReasoningContent(r) => {
                        let p = self.blocks.entry(i).or_insert(Partial::Reasoning {
                            text: String::new(),
                            signature: None,
                        });
                        if let Partial::Reasoning { text, signature } = p {
                            match r {
                                ReasoningDelta::Text(t) => {
                                    text.push_str(t);
                                    emit(AgentEvent::Reasoning(t.clone()));
                                }
                                ReasoningDelta::Signature(s) => *signature = Some(s.clone()),
                            }
                        }
                    }
                }
            }
            StreamEvent::ContentBlockStop { content_block_index } => {
                if matches!(self.blocks.get(content_block_index), Some(Partial::Text { .. })) {
                    let pieces = self.splitter.finish();
                    self.add_text(*content_block_index, pieces, emit);
                }
            }
            StreamEvent::MessageStop { stop_reason } => self.stop_reason = stop_reason.clone(),
            StreamEvent::MessageStart { .. } | StreamEvent::Metadata { .. } => {}
        }
    }

    fn add_text(&mut self, i: usize, pieces: Vec<Piece>, emit: &mut (dyn FnMut(AgentEvent) + Send)) {
        let p = self.blocks.entry(i).or_insert(Partial::Text {
            text: String::new(),
            reasoning: String::new(),
        });
        let Partial::Text { text, reasoning } = p else { return };
        for piece in pieces {
            match piece {
                Piece::Text(t) => {
                    text.push_str(&t);
                    emit(AgentEvent::Text(t));
                }
                Piece::Reasoning(r) => {
                    reasoning.push_str(&r);
                    emit(AgentEvent::Reasoning(r));
                }
            }
        }
    }

    pub(crate) fn finish(mut self, emit: &mut (dyn FnMut(AgentEvent) + Send)) -> StepOutput {
        // Text blocks that never got a contentBlockStop still hold back a possible partial tag.
        let last_text = self
            .blocks
            .iter()
            .rev()
            .find(|(_, p)| matches!(p, Partial::Text { .. }))
            .map(|(i, _)| *i);
        if let Some(i) = last_text {
            let pieces = self.splitter.finish();
            self.add_text(i, pieces, emit);
        }
        let mut content = vec![];
        let mut truncated_tool = None;
        for (_, p) in self.blocks {
            match p {
                Partial::Text { text, reasoning } => {
                    if !reasoning.is_empty() {
                        content.push(Block::ReasoningContent {
                            text: reasoning,
                            signature: None,
                        });
                    }
                    if !text.is_empty() {
                        content.push(Block::Text(text));
                    }
                }
                Partial::Reasoning { text, signature } => content.push(Block::ReasoningContent { text, signature }),
                Partial::Tool { id, name, json } => {
                    let parsed = if json.trim().is_empty() {
                        Ok(Value::Object(Default::default()))
                    } else {
                        serde_json::from_str::<Value>(&json)
                    };
                    match parsed {
                        Ok(input) => content.push(Block::ToolUse {
                            tool_use_id: id,
                            name,
                            input,
                        }),
                        Err(_) if self.stop_reason == "max_tokens" => truncated_tool = Some(name),
                        // Malformed but complete: keep it with the raw text so the tool reports the problem.
                        Err(e) => content.push(Block::ToolUse {
                            tool_use_id: id,
                            name,
                            input: serde_json::json!({ "_invalid_json": json, "_error": e.to_string() }),
                        }),
                    }
                }
            }
        }
        StepOutput {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason: self.stop_reason,
            truncated_tool,
        }
    }
}
