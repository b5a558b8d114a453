//! The scheduler thread: continuous batching. Each step runs one forward pass over every active sequence (the
//! decoding ones with their last token, new ones with the next chunk of their prompt, within a budget of tokens
//! per step), samples one token for each sequence whose prompt is all in, streams text and retires finished or
//! cancelled sequences; waiting requests join between steps. A new sequence starts from the longest prefix of its
//! prompt the prefix cache holds (`prefix.rs`); a sequence's blocks go into it once its prompt is in and again when
//! it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use infer_constraint::TokenConstraint;
use infer_models::{CausalLm, KvCache, SeqInput};
use tokio::sync::mpsc::UnboundedSender;

use crate::prefix::PrefixCache;
use crate::sampler::Sampler;
use crate::text::TextState;
use crate::{EngineEvent, Error, GenerateRequest, Inner, StopReason};

/// A queued request.
pub(crate) struct Job {
    pub(crate) tokens: Vec<u32>,
    pub(crate) req: GenerateRequest,
    pub(crate) constraint: Option<TokenConstraint>,
    pub(crate) events: UnboundedSender<EngineEvent>,
}

pub(crate) struct Seq {
    events: UnboundedSender<EngineEvent>,
    cache: KvCache,
    /// The prompt (the tokens of the cache's first positions, then `completion`'s).
    prompt: Vec<u32>,
    /// Prompt tokens copied from the prefix cache rather than computed.
    cached_tokens: usize,
    /// Tokens still to feed (the rest of the prompt, then the last sampled token).
    pending: Vec<u32>,
    pub(crate) completion: Vec<u32>,
    prompt_tokens: usize,
    max_tokens: usize,
    sampler: Sampler,
    text: TextState,
    constraint: Option<TokenConstraint>,
}

pub(crate) fn start(
    inner: Arc<Inner>,
    max_batch: usize,
    max_queue: usize,
    step_tokens: usize,
    prefix_budget: usize,
) -> Result<SyncSender<Job>, Error> {
    // Hand-rolled on std channels: a bounded queue (try_send gives QueueFull) and one thread that owns the batch.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(max_queue.max(1));
    // The loop runs on a worker of the model's own thread pool, so the kernels' parallel loops start on this
    // thread at once and the other workers join as they come: with the calling thread outside the pool every
    // product waited for sleeping workers to wake (8-stream decode 110 vs 162 tok/s on the demo model, q4_0), and
    // with candle's spinning pool a single busy process on the machine stalled every product (12 tok/s).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("infer-{i}"))
        .build()
        .map_err(|_| Error::Stopped)?;
    std::thread::Builder::new()
        .name("infer-scheduler".into())
        .spawn(move || {
            // The prefix cache belongs to this thread: it lives and dies with the engine (and so with the model).
            let prefix = PrefixCache::new(prefix_budget, inner.model.new_cache().floats_per_position());
            pool.install(|| run(inner, rx, max_batch, step_tokens, prefix))
        })
        .map_err(|_| Error::Stopped)?;
    Ok(tx)
}

/// A sequence for the scheduler's tests.
#[cfg(test)]
pub(crate) fn tests_seq(inner: &Inner, tokens: Vec<u32>, events: UnboundedSender<EngineEvent>) -> Seq {
    let req = crate::GenerateRequest::new(String::new());
    admit(
        inner,
        &mut PrefixCache::new(0, 0),
        Job {
            tokens,
            req,
            constraint: None,
            events,
        },
    )
    .expect("max_tokens > 0")
}

impl Seq {
    /// Whether the whole prompt is in the cache: the sequence has sampled, and feeds its last token every step.
    fn decoding(&self) -> bool {
        !self.completion.is_empty()
    }
}

fn admit(inner: &Inner, prefix: &mut PrefixCache, job: Job) -> Option<Seq> {
    let prompt_tokens = job.tokens.len();
    if job.req.max_tokens == 0 {
        let _ = job.events.send(EngineEvent::Done {
            stop_reason: StopReason::MaxTokens,
            prompt_tokens,
            completion_tokens: 0,
            cached_tokens: 0,
        });
        return None;
    }
    let mut cache = inner.model.new_cache();
    let cached_tokens = prefix.reuse(&job.tokens, &mut cache);
    if cached_tokens > 0 {
        tracing::info!(
            prompt_tokens,
            cached_tokens,
            computed_tokens = prompt_tokens - cached_tokens,
            "prompt prefix reused from the prefix cache"
        );
    }
    publish(inner, prefix);
    Some(Seq {
        events: job.events,
        cache,
        pending: job.tokens[cached_tokens..].to_vec(),
        prompt: job.tokens,
        cached_tokens,
        completion: Vec::new(),
        prompt_tokens,
        max_tokens: job.req.max_tokens,
        sampler: Sampler::new(job.req.sampling),
        text: TextState::new(job.req.stop_sequences),
        constraint: job.constraint,
    })
}

/// How many pending tokens each sequence feeds this step: every decoding sequence its one token, then prompts in
/// order of arrival, each as much as the rest of the budget allows (at least one prompt token a step, so that
/// prompts move on even when decoding sequences fill the budget).
pub(crate) fn plan(active: &[Seq], step_tokens: usize) -> Vec<usize> {
    let decoding = active.iter().filter(|s| s.decoding()).count();
    let mut budget = step_tokens.saturating_sub(decoding).max(1);
    active
        .iter()
        .map(|s| {
            if s.decoding() {
                return s.pending.len();
            }
            let n = s.pending.len().min(budget);
            budget -= n;
            n
        })
        .collect()
}

/// Copies the prefix cache's statistics where [`crate::Engine::prefix_cache_stats`] reads them.
fn publish(inner: &Inner, prefix: &PrefixCache) {
    if let Ok(mut stats) = inner.prefix_stats.lock() {
        *stats = prefix.stats();
    }
}

/// Keeps what `s` has computed in the prefix cache: its prompt and completion so far (a sequence's cache is right
/// however it ends, unless its forward pass failed).
fn retain_prefix(inner: &Inner, prefix: &mut PrefixCache, s: &Seq) {
    let tokens: Vec<u32> = s.prompt.iter().chain(&s.completion).copied().collect();
    prefix.insert(&tokens, &s.cache);
    publish(inner, prefix);
}

fn run(inner: Arc<Inner>, rx: Receiver<Job>, max_batch: usize, step_tokens: usize, mut prefix: PrefixCache) {
    let mut active: Vec<Seq> = Vec::new();
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(job) => active.extend(admit(&inner, &mut prefix, job)),
                Err(_) => return, // every Engine clone is gone
            }
        }
        while active.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => active.extend(admit(&inner, &mut prefix, job)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => break,
            }
        }
        // Cancelled (dropped) generations leave before the step.
        let (cancelled, running): (Vec<Seq>, Vec<Seq>) = active.drain(..).partition(|s| s.events.is_closed());
        for s in &cancelled {
            retain_prefix(&inner, &mut prefix, s);
        }
        active = running;
        inner.active.store(active.len(), Ordering::Relaxed);
        if active.is_empty() {
            continue;
        }
        let fed = plan(&active, step_tokens);
        let logits = {
            let mut batch: Vec<SeqInput<'_>> = active
                .iter_mut()
                .zip(&fed)
                .filter(|(_, n)| **n > 0)
                .map(|(s, &n)| SeqInput {
                    tokens: &s.pending[..n],
                    cache: &mut s.cache,
                })
                .collect();
            inner
                .model
                .forward_last(&mut batch)
                .and_then(|t| Ok(t.to_vec2::<f32>()?))
        };
        // The caches have grown for this step's tokens.
        let kv: usize = active.iter().map(|s| s.cache.allocated_bytes()).sum();
        inner.peak_kv_bytes.fetch_max(kv as u64, Ordering::Relaxed);
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed");
                for s in active.drain(..) {
                    let _ = s.events.send(EngineEvent::Failed { message: e.to_string() });
                }
                continue;
            }
        };
        let mut rows = logits.into_iter();
        let mut keep = Vec::with_capacity(active.len());
        for (mut s, n) in active.drain(..).zip(fed) {
            if n == 0 {
                keep.push(s);
                continue;
            }
            let Some(mut row) = rows.next() else {
                keep.push(s);
                continue;
            };
            s.pending.drain(..n);
            if !s.pending.is_empty() {
                // A chunk of the prompt: its logits predict nothing anyone asked for.
                keep.push(s);
                continue;
            }
            if !s.decoding() {
                // The prompt is all in: requests that share it need not wait for this one to end.
                prefix.insert(&s.prompt, &s.cache);
                publish(&inner, &prefix);
            }
            if step(&inner, &mut s, &mut row) {
                keep.push(s);
            } else {
                retain_prefix(&inner, &mut prefix, &s);
            }
        }
        active = keep;
        inner.active.store(active.len(), Ordering::Relaxed);
    }
}

fn finish(inner: &Inner, s: &mut Seq, reason: StopReason) {
    if !matches!(reason, StopReason::StopSequence(_)) {
        let decoded = decode(inner, &s.completion);
        let up = s.text.update(decoded, true);
        if !up.delta.is_empty() {
            let _ = s.events.send(EngineEvent::Delta { text: up.delta });
        }
    }
    let _ = s.events.send(EngineEvent::Done {
        stop_reason: reason,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion.len(),
        cached_tokens: s.cached_tokens,
    });
}

/// The text of `ids`: special tokens are left out, except the text tokens of the load, spelled as their text (the
/// runs between them decoded on their own: a special token never splits a character).
fn decode(inner: &Inner, ids: &[u32]) -> String {
    let plain = |run: &[u32]| inner.tokenizer.decode(run, true).unwrap_or_default();
    if inner.text_tokens.is_empty() {
        return plain(ids);
    }
    let mut out = String::new();
    let mut run_start = 0;
    for (i, id) in ids.iter().enumerate() {
        if let Some((_, text)) = inner.text_tokens.iter().find(|(t, _)| t == id) {
            out.push_str(&plain(&ids[run_start..i]));
            out.push_str(text);
            run_start = i + 1;
        }
    }
    out.push_str(&plain(&ids[run_start..]));
    out
}

/// Samples and streams one token; returns whether the sequence continues.
fn step(inner: &Inner, s: &mut Seq, logits: &mut [f32]) -> bool {
    if let Some(c) = &mut s.constraint {
        if c.is_finished() {
            finish(inner, s, StopReason::EndTurn);
            return false;
        }
        if let Err(e) = c.mask_logits(logits) {
            let _ = s.events.send(EngineEvent::Failed {
                message: format!("constrained decoding failed: {e}"),
            });
            return false;
        }
    }
    let Some(token) = s.sampler.sample(logits) else {
        let _ = s.events.send(EngineEvent::Failed {
            message: "no token can be sampled (all logits are -inf or NaN)".into(),
        });
        return false;
    };
    if inner.eos_ids.contains(&token) {
        finish(inner, s, StopReason::EndTurn);
        return false;
    }
    if let Some(c) = &mut s.constraint
        && let Err(e) = c.commit(token)
    {
        let _ = s.events.send(EngineEvent::Failed {
            message: format!("constrained decoding failed: {e}"),
        });
        return false;
    }
    s.completion.push(token);
    let is_byte = inner.byte_tokens.get(token as usize).copied().unwrap_or(false);
    let up = s.text.after_token(is_byte, &s.completion, |ids| decode(inner, ids));
    if !up.delta.is_empty() && s.events.send(EngineEvent::Delta { text: up.delta }).is_err() {
        return false; // cancelled
    }
    if let Some(stop) = up.stop {
        finish(inner, s, StopReason::StopSequence(stop));
        return false;
    }
    if s.constraint.as_ref().is_some_and(TokenConstraint::is_finished) {
        finish(inner, s, StopReason::EndTurn);
        return false;
    }
    if s.completion.len() >= s.max_tokens || s.cache.len() + 1 > inner.model.config().max_position_embeddings {
        finish(inner, s, StopReason::MaxTokens);
        return false;
    }
    s.pending.clear();
    s.pending.push(token);
    true
}
