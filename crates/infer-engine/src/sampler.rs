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

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits whose softmax at temperature 1 is `probs`.
    fn logits(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    /// How often each token is drawn in `n` samples.
    fn counts(params: Sampling, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(params);
        let mut c = vec![0; logits.len()];
        for _ in 0..n {
            c[s.sample(logits).expect("a token") as usize] += 1;
        }
        c
    }

    fn params(temperature: f32, top_k: Option<usize>, top_p: f32, seed: u64) -> Sampling {
        Sampling {
            temperature,
            top_p,
            top_k,
            seed: Some(seed),
        }
    }

    const N: usize = 20_000;

    fn assert_near(count: usize, p: f64, what: &str) {
        let f = count as f64 / N as f64;
        // Five standard deviations of a binomial frequency: a seeded draw far inside it.
        let tol = 5.0 * (p * (1.0 - p) / N as f64).sqrt() + 1e-9;
        assert!(
            (f - p).abs() <= tol,
            "{what}: frequency {f:.4}, expected {p:.4} ± {tol:.4}"
        );
    }

    #[test]
    fn plain_sampling_follows_the_softmax() {
        let l = logits(&[0.5, 0.3, 0.15, 0.05]);
        let c = counts(params(1.0, None, 1.0, 1), &l, N);
        for (i, p) in [0.5, 0.3, 0.15, 0.05].into_iter().enumerate() {
            assert_near(c[i], p, &format!("token {i}"));
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_and_renormalises() {
        let l = logits(&[0.1, 0.5, 0.15, 0.25]);
        let c = counts(params(1.0, Some(2), 1.0, 2), &l, N);
        assert_eq!((c[0], c[2]), (0, 0), "{c:?}");
        assert_near(c[1], 0.5 / 0.75, "best");
        assert_near(c[3], 0.25 / 0.75, "second");
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus_reaching_p() {
        let l = logits(&[0.05, 0.5, 0.3, 0.15]);
        // 0.5 < 0.75 <= 0.5 + 0.3: the nucleus is the two best.
        let c = counts(params(1.0, None, 0.75, 3), &l, N);
        assert_eq!((c[0], c[3]), (0, 0), "{c:?}");
        assert_near(c[1], 0.5 / 0.8, "best");
        assert_near(c[2], 0.3 / 0.8, "second");
        // With top-k as well, both cuts apply (k first, then p on the renormalised rest).
        let c = counts(params(1.0, Some(3), 0.9, 4), &l, N);
        assert_eq!(c[0], 0, "{c:?}");
        let kept = 0.5 + 0.3 + 0.15;
        for (i, p) in [(1, 0.5), (2, 0.3), (3, 0.15)] {
            assert_near(c[i], p / kept, &format!("token {i}"));
        }
    }

    #[test]
    fn temperature_sharpens_or_flattens() {
        let probs = [0.6f64, 0.3, 0.1];
        let l = logits(&probs.map(|p| p as f32));
        for t in [0.5f32, 2.0] {
            let c = counts(params(t, None, 1.0, 5), &l, N);
            let w: Vec<f64> = probs.iter().map(|p| p.powf(1.0 / f64::from(t))).collect();
            let z: f64 = w.iter().sum();
            for i in 0..3 {
                assert_near(c[i], w[i] / z, &format!("t={t} token {i}"));
            }
        }
    }

    #[test]
    fn a_seed_reproduces_and_masked_tokens_never_come() {
        let mut l = logits(&[0.25, 0.25, 0.25, 0.25]);
        l[2] = f32::NEG_INFINITY;
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, None, 1.0, seed));
            (0..64).map(|_| s.sample(&l).expect("a token")).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
        assert!(!draw(11).contains(&2));
        assert_eq!(
            Sampler::new(params(1.0, None, 1.0, 1)).sample(&[f32::NEG_INFINITY; 3]),
            None
        );
    }
}
