//! Prefix reuse across requests: the keys and values of recent sequences, kept in a trie of token blocks, so that a
//! prompt that starts as an earlier one did (a conversation resent whole every turn, a shared system prompt) is
//! prefilled only from where they part.
//!
//! Why this shape: a node holds one block of [`BLOCK`] tokens and their keys and values for every layer, a child per
//! following block, as vLLM's and SGLang's prefix caches do. Prompts that share a beginning share its nodes, so a
//! conversation's turns cost the memory of their new blocks only, and eviction can drop the least recently used
//! *ends* of branches (leaves) while the shared beginnings stay. The blocks are never written once in the trie: a
//! sequence that reuses them gets a copy in its own contiguous [`KvCache`] (attention reads one contiguous cache per
//! sequence; the copy is a memory copy of what prefill would compute with the whole model, thousands of times
//! faster), so no sequence can change what another one, or the next request, reads. Only the scheduler thread
//! touches the trie, so it needs no lock. Only whole blocks are kept (at most `BLOCK - 1` tokens at the end of a
//! sequence are not), but a match may end inside one: a prompt takes as many of a block's first tokens as it
//! shares.

use std::collections::HashMap;

use infer_models::KvCache;

/// Tokens per block of the trie. Small, so little is computed again at a sequence's end or where prompts part, and
/// large enough that the trie's own bookkeeping is nothing beside the keys and values (16 positions of an 8B model
/// are 4 MiB, of SmolLM2-135M 0.7 MiB).
pub(crate) const BLOCK: usize = 16;

/// The default budget of the prefix cache: an eighth of the memory available now, at most 4 GiB (1 GiB when
/// `/proc/meminfo` cannot be read). It is filled only as requests come, and the weights and the running sequences'
/// caches need the rest.
pub fn default_budget_bytes() -> usize {
    const CAP: usize = 4 << 30;
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<usize>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    available.map_or(1 << 30, |bytes| (bytes / 8).min(CAP))
}

struct Node {
    parent: usize,
    /// The block's tokens (the key under which the parent holds it).
    tokens: Box<[u32]>,
    /// The block's keys and values (see `KvCache::read_positions`), `BLOCK` positions.
    kv: Box<[f32]>,
    children: HashMap<Box<[u32]>, usize>,
    /// The tick of the last request that matched or wrote this block.
    last_used: u64,
}

/// What the prefix cache has done, for the engine's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prompts looked up.
    pub lookups: u64,
    /// Prompts that reused at least one cached token.
    pub hits: u64,
    /// Prompt tokens whose keys and values were copied from the cache instead of computed.
    pub reused_tokens: u64,
    /// Bytes the cache holds now (at most `budget_bytes`).
    pub held_bytes: u64,
    /// Its budget (`LoadOptions::prefix_cache_bytes`).
    pub budget_bytes: u64,
    /// Blocks it holds now.
    pub blocks: u64,
    /// Blocks evicted to stay within the budget.
    pub evicted_blocks: u64,
}

/// The trie. Node 0 is the root (no tokens, never evicted); freed slots are reused.
pub(crate) struct PrefixCache {
    nodes: Vec<Option<Node>>,
    free: Vec<usize>,
    /// Bytes one block takes in the budget (its keys and values, its tokens and the node).
    block_bytes: usize,
    tick: u64,
    stats: PrefixCacheStats,
}

impl PrefixCache {
    /// A cache of at most `budget` bytes for blocks of `floats_per_position` floats a position.
    pub(crate) fn new(budget: usize, floats_per_position: usize) -> PrefixCache {
        let root = Node {
            parent: 0,
            tokens: Box::new([]),
            kv: Box::new([]),
            children: HashMap::new(),
            last_used: 0,
        };
        PrefixCache {
            nodes: vec![Some(root)],
            free: Vec::new(),
            block_bytes: BLOCK * (floats_per_position + 1) * 4 + std::mem::size_of::<Node>() + 64,
            tick: 0,
            stats: PrefixCacheStats {
                budget_bytes: budget as u64,
                ..PrefixCacheStats::default()
            },
        }
    }

    pub(crate) fn stats(&self) -> PrefixCacheStats {
        self.stats
    }

    fn node(&self, id: usize) -> &Node {
        self.nodes[id].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: usize) -> &mut Node {
        self.nodes[id].as_mut().expect("live node")
    }

    fn enabled(&self) -> bool {
        self.stats.budget_bytes as usize >= self.block_bytes
    }

    /// The nodes of the longest run of whole blocks of `tokens` in the trie, root excluded, each touched.
    fn walk(&mut self, tokens: &[u32]) -> Vec<usize> {
        self.tick += 1;
        let mut path = Vec::new();
        let mut at = 0;
        for block in tokens.chunks_exact(BLOCK) {
            let Some(&child) = self.node(at).children.get(block) else {
                break;
            };
            let tick = self.tick;
            self.node_mut(child).last_used = tick;
            path.push(child);
            at = child;
        }
        path
    }

    /// Fills the empty `cache` with the longest cached prefix of `prompt`, leaving at least its last token to be
    /// computed (its logits are the first sample's); returns how many tokens were copied in.
    pub(crate) fn reuse(&mut self, prompt: &[u32], cache: &mut KvCache) -> usize {
        if !self.enabled() || !cache.is_empty() {
            return 0;
        }
        self.stats.lookups += 1;
        let usable = prompt.len().saturating_sub(1);
        let path = self.walk(prompt);
        // Where the whole blocks end, the child that shares the most of the next tokens gives those: the match
        // ends at the token where the prompts part, not at the block before.
        let at = path.last().copied().unwrap_or(0);
        let rest = &prompt[(path.len() * BLOCK).min(usable)..usable];
        let partial = self
            .node(at)
            .children
            .iter()
            .map(|(tokens, &id)| (tokens.iter().zip(rest).take_while(|(a, b)| a == b).count(), id))
            .max();
        let mut copied = 0;
        for id in path
            .into_iter()
            .chain(partial.filter(|&(n, _)| n > 0).map(|(_, id)| id))
        {
            let n = BLOCK.min(usable - copied);
            if n == 0 {
                break;
            }
            let n = match partial {
                Some((shared, last)) if last == id => n.min(shared),
                _ => n,
            };
            // A failed append writes nothing, so what is copied so far stands. It cannot fail (the blocks come from
            // this model's caches, the prompt fits the context); computing the rest is always right.
            if let Err(e) = cache.append_positions(&self.node(id).kv, BLOCK, n) {
                tracing::error!(error = %e, "prefix cache block does not fit the sequence; not reused");
                break;
            }
            let tick = self.tick;
            self.node_mut(id).last_used = tick;
            copied += n;
        }
        if copied > 0 {
            self.stats.hits += 1;
            self.stats.reused_tokens += copied as u64;
        }
        copied
    }

    /// Keeps the whole blocks of `cache`, whose positions hold `tokens` (at least `cache.len()` of them), evicting
    /// the least recently used blocks elsewhere in the trie to stay within the budget; blocks already held are only
    /// touched.
    pub(crate) fn insert(&mut self, tokens: &[u32], cache: &KvCache) {
        if !self.enabled() {
            return;
        }
        let whole = cache.len().min(tokens.len()) / BLOCK * BLOCK;
        let path = self.walk(&tokens[..whole]);
        let mut at = path.last().copied().unwrap_or(0);
        for start in (path.len() * BLOCK..whole).step_by(BLOCK) {
            while self.held() + self.block_bytes > self.stats.budget_bytes as usize {
                if !self.evict_one(at) {
                    return;
                }
            }
            let kv = match cache.read_positions(start, BLOCK) {
                Ok(kv) => kv.into_boxed_slice(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot copy a block into the prefix cache");
                    return;
                }
            };
            let key: Box<[u32]> = tokens[start..start + BLOCK].into();
            let node = Node {
                parent: at,
                tokens: key.clone(),
                kv,
                children: HashMap::new(),
                last_used: self.tick,
            };
            let id = match self.free.pop() {
                Some(id) => {
                    self.nodes[id] = Some(node);
                    id
                }
                None => {
                    self.nodes.push(Some(node));
                    self.nodes.len() - 1
                }
            };
            self.node_mut(at).children.insert(key, id);
            self.stats.blocks += 1;
            self.stats.held_bytes = self.held() as u64;
            at = id;
        }
    }

    fn held(&self) -> usize {
        self.stats.blocks as usize * self.block_bytes
    }

    /// Drops the least recently used leaf other than `keep` (the block the insertion goes on from); false when
    /// there is none.
    fn evict_one(&mut self, keep: usize) -> bool {
        // A linear scan: the trie holds at most budget / block bytes nodes (a few thousand), and evicting happens
        // once per block written when the cache is full, beside a copy of the block itself.
        let victim = self
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .filter_map(|(id, n)| n.as_ref().map(|n| (id, n)))
            .filter(|&(id, n)| id != keep && n.children.is_empty())
            .min_by_key(|&(_, n)| n.last_used)
            .map(|(id, _)| id);
        let Some(id) = victim else {
            return false;
        };
        let node = self.nodes[id].take().expect("live node");
        self.node_mut(node.parent).children.remove(&node.tokens);
        self.free.push(id);
        self.stats.blocks -= 1;
        self.stats.evicted_blocks += 1;
        self.stats.held_bytes = self.held() as u64;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_models::CausalLm;

    fn model() -> (tempfile::TempDir, infer_models::Transformer) {
        let dir = tempfile::tempdir().expect("tempdir");
        test_support::tiny_model(dir.path(), test_support::Family::Llama).expect("tiny model");
        let m = infer_models::load(dir.path(), None).expect("load");
        (dir, m)
    }

    /// A cache holding `tokens`, computed by the model.
    fn computed(m: &infer_models::Transformer, tokens: &[u32]) -> KvCache {
        let mut cache = m.new_cache();
        m.forward_all(tokens, &mut cache).expect("forward");
        cache
    }

    #[test]
    fn reuse_copies_whole_matching_blocks_and_leaves_the_last_token() {
        let (_dir, m) = model();
        let tokens: Vec<u32> = (1..=40).collect();
        let full = computed(&m, &tokens);
        let mut pc = PrefixCache::new(usize::MAX, full.floats_per_position());
        pc.insert(&tokens, &full);
        assert_eq!(pc.stats().blocks, 2, "40 tokens are two whole blocks");
        // The same prompt again: both blocks, all 32 tokens (fewer than 40 - 1).
        let mut c = m.new_cache();
        assert_eq!(pc.reuse(&tokens, &mut c), 32);
        assert_eq!(
            c.read_positions(0, 32).expect("read"),
            full.read_positions(0, 32).expect("read")
        );
        // A prompt of exactly the cached 32 tokens: the last one is left to compute.
        let mut c = m.new_cache();
        assert_eq!(pc.reuse(&tokens[..32], &mut c), 31);
        assert_eq!(c.len(), 31);
        // Parting inside the second block: the first, and the second's tokens up to there.
        let mut other = tokens.clone();
        other[20] = 99;
        let mut c = m.new_cache();
        assert_eq!(pc.reuse(&other, &mut c), 20);
        assert_eq!(
            c.read_positions(0, 20).expect("read"),
            full.read_positions(0, 20).expect("read")
        );
        // Parting inside the first.
        other[3] = 99;
        assert_eq!(pc.reuse(&other, &mut m.new_cache()), 3);
        other[0] = 99;
        assert_eq!(pc.reuse(&other, &mut m.new_cache()), 0);
        let s = pc.stats();
        assert_eq!((s.lookups, s.hits, s.reused_tokens), (5, 4, 32 + 31 + 20 + 3));
    }

    #[test]
    fn a_small_budget_evicts_the_least_recently_used_ends_and_stays_within_it() {
        let (_dir, m) = model();
        let a: Vec<u32> = (1..=48).collect();
        let b: Vec<u32> = (1..=16).chain(100..132).collect();
        let c: Vec<u32> = (200..248).collect();
        let floats = m.new_cache().floats_per_position();
        let block = PrefixCache::new(0, floats).block_bytes;
        // Room for five blocks.
        let mut pc = PrefixCache::new(5 * block + block / 2, floats);
        pc.insert(&a, &computed(&m, &a)); // a0 a1 a2
        pc.insert(&b, &computed(&m, &b)); // a0 shared, b1 b2
        assert_eq!(pc.stats().blocks, 5);
        // b was used last; c's three blocks evict a's two ends and then b's last block.
        pc.insert(&c, &computed(&m, &c));
        let s = pc.stats();
        assert!(s.held_bytes <= s.budget_bytes, "{s:?}");
        assert_eq!((s.blocks, s.evicted_blocks), (5, 3));
        assert_eq!(pc.reuse(&a, &mut m.new_cache()), 16, "a's first block is b's too");
        assert_eq!(pc.reuse(&b, &mut m.new_cache()), 32, "b lost its last block");
        assert_eq!(pc.reuse(&c, &mut m.new_cache()), 47);
        // A budget below one block disables the cache.
        let mut none = PrefixCache::new(block - 1, floats);
        none.insert(&a, &computed(&m, &a));
        assert_eq!((none.stats().blocks, none.reuse(&a, &mut m.new_cache())), (0, 0));
    }
}
