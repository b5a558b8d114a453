//! Token sampling: greedy, temperature, top-k, top-p (nucleus), seeded.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Sampling;

/// Per-sequence sampler state (its own RNG, so a seed reproduces a sequence whatever else is batched with it).
pub(crate) struct Sampler {
    params: Sampling,
    rng: StdRng,
}

impl Sampler {
    pub(crate) fn new(params: Sampling) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Sampler { params, rng }
    }

    /// Picks a token from `logits` (masked entries are `-inf`). `None` when every entry is `-inf` or NaN.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        let argmax = logits.iter().enumerate().filter(|(_, v)| v.is_finite()).fold(
            None,
            |best: Option<(usize, f32)>, (i, &v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((i, v)),
            },
        )?;
        if self.params.temperature <= 0.0 || self.params.top_k == Some(1) {
            return Some(argmax.0 as u32);
        }
        let t = self.params.temperature;
        let max = argmax.1;
        // Tokens with probability below e^-30 of the best cannot matter; dropping them keeps the sort short.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && (max - **v) / t < 30.0)
            .map(|(i, &v)| (i as u32, (v - max) / t))
            .collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = self.params.top_k {
            cand.truncate(k.max(1));
        }
        let mut probs: Vec<f32> = cand.iter().map(|(_, l)| l.exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let top_p = self.params.top_p;
        if top_p > 0.0 && top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r: f32 = self.rng.random::<f32>() * total;
        for ((id, _), p) in cand.iter().zip(&probs) {
            if r < *p {
                return Some(*id);
            }
            r -= p;
        }
        cand.last().map(|(id, _)| *id)
    }
}
