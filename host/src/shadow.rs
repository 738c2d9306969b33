//! Shadow scoring: a candidate snapshot (a new model or policy) scored beside the live one on
//! every request. Only the live answer is returned; [`ShadowTally`] counts how the two differ,
//! which is how a fraud team checks a model on real traffic before it decides anything.

use crate::SnapshotInfo;
use crate::wire;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The decisions a response can carry, in the order of [`ShadowReport::decisions`]; `none`
/// is an error response (no decision).
pub const DECISIONS: [&str; 4] = ["allow", "review", "decline", "none"];

/// Score differences are summed in fixed point, 1e-9 per unit, so that the tally stays atomic.
const NANOS: f64 = 1e9;

/// How the live and the shadow answers compared so far (lock-free: every request adds to it).
#[derive(Default)]
pub(crate) struct ShadowTally {
    /// `pairs[live * 4 + shadow]`: requests by (live decision, shadow decision).
    pairs: [AtomicU64; 16],
    /// Calls the shadow could not answer (its fallback; the live answer went out regardless).
    fallbacks: AtomicU64,
    /// Requests where both gave a score.
    scored_both: AtomicU64,
    /// Sum of |live score - shadow score| over those, in 1e-9 units.
    abs_diff: AtomicU64,
    /// Largest |live score - shadow score|, in 1e-9 units.
    max_diff: AtomicU64,
    /// Sums of the live and the shadow scores over those, in 1e-9 units.
    live_sum: AtomicU64,
    shadow_sum: AtomicU64,
}

/// One response's decision (index into [`DECISIONS`]) and score.
fn outcome(response: &Value) -> (usize, Option<f64>) {
    let decision = wire::get(response, "decision")
        .and_then(Value::as_str)
        .and_then(|d| DECISIONS[..3].iter().position(|&k| k == d))
        .unwrap_or(3);
    (decision, wire::get(response, "score").and_then(Value::as_f64))
}

/// The responses in a body: one, or each of a batch's array.
fn responses(body: &[u8]) -> Vec<Value> {
    match wire::parse(body) {
        Ok(Value::Array(items)) => items,
        Ok(one) => vec![one],
        Err(_) => Vec::new(),
    }
}

impl ShadowTally {
    /// Adds the comparison of one call's live body with the shadow's body (single or batch).
    pub(crate) fn record(&self, live: &[u8], shadow: &[u8], shadow_fell_back: bool) {
        if shadow_fell_back {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let (live, shadow) = (responses(live), responses(shadow));
        for (l, s) in live.iter().zip(&shadow) {
            let ((ld, ls), (sd, ss)) = (outcome(l), outcome(s));
            self.pairs[ld * 4 + sd].fetch_add(1, Ordering::Relaxed);
            if let (Some(ls), Some(ss)) = (ls, ss) {
                let fixed = |x: f64| (x.abs() * NANOS).round() as u64;
                self.scored_both.fetch_add(1, Ordering::Relaxed);
                self.abs_diff.fetch_add(fixed(ls - ss), Ordering::Relaxed);
                self.max_diff.fetch_max(fixed(ls - ss), Ordering::Relaxed);
                self.live_sum.fetch_add(fixed(ls), Ordering::Relaxed);
                self.shadow_sum.fetch_add(fixed(ss), Ordering::Relaxed);
            }
        }
    }

    /// The report so far about `candidate`.
    pub(crate) fn report(&self, candidate: Arc<SnapshotInfo>, since: SystemTime) -> ShadowReport {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let decisions: [[u64; 4]; 4] =
            std::array::from_fn(|l| std::array::from_fn(|s| load(&self.pairs[l * 4 + s])));
        let compared: u64 = decisions.iter().flatten().sum();
        let agreed: u64 = (0..4).map(|i| decisions[i][i]).sum();
        let both = load(&self.scored_both);
        let mean = |sum: u64| if both == 0 { None } else { Some(sum as f64 / NANOS / both as f64) };
        ShadowReport {
            candidate,
            since,
            compared,
            shadow_fallbacks: load(&self.fallbacks),
            changed: compared - agreed,
            decisions,
            mean_abs_score_diff: mean(load(&self.abs_diff)),
            max_abs_score_diff: (both > 0).then(|| load(&self.max_diff) as f64 / NANOS),
            mean_live_score: mean(load(&self.live_sum)),
            mean_shadow_score: mean(load(&self.shadow_sum)),
        }
    }
}

/// How a shadow snapshot's answers differ from the live ones since it was loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowReport {
    /// The candidate snapshot scored in the shadow.
    pub candidate: Arc<SnapshotInfo>,
    /// When it was loaded as the shadow.
    pub since: SystemTime,
    /// Transactions scored by both.
    pub compared: u64,
    /// Calls the shadow could not answer (fallback); the live answer went out as usual.
    pub shadow_fallbacks: u64,
    /// Transactions whose decision differs.
    pub changed: u64,
    /// `decisions[live][shadow]`: transactions by the live and the shadow decision, indexed
    /// as [`DECISIONS`].
    pub decisions: [[u64; 4]; 4],
    /// Mean |live score - shadow score| over transactions that both scored.
    pub mean_abs_score_diff: Option<f64>,
    /// Largest |live score - shadow score|.
    pub max_abs_score_diff: Option<f64>,
    /// Mean live score over the same transactions.
    pub mean_live_score: Option<f64>,
    /// Mean shadow score over the same transactions.
    pub mean_shadow_score: Option<f64>,
}

impl ShadowReport {
    /// The report as JSON (`GET /v1/shadow`): counts, the decision matrix as
    /// `{"allow": {"review": 3, ...}, ...}` (zero cells left out), score differences.
    pub fn to_json(&self) -> Value {
        let mut matrix = serde_json::Map::new();
        for (l, row) in self.decisions.iter().enumerate() {
            let cells: serde_json::Map<String, Value> = row
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (DECISIONS[s].to_string(), Value::from(*n)))
                .collect();
            if !cells.is_empty() {
                matrix.insert(DECISIONS[l].to_string(), Value::Object(cells));
            }
        }
        let since = self.since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        serde_json::json!({
            "candidate": {
                "snapshot_id": self.candidate.snapshot_id,
                "model_id": self.candidate.model_id,
                "digest": self.candidate.digest,
            },
            "since": since,
            "compared": self.compared,
            "changed": self.changed,
            "shadow_fallbacks": self.shadow_fallbacks,
            "decisions": matrix,
            "mean_abs_score_diff": self.mean_abs_score_diff,
            "max_abs_score_diff": self.max_abs_score_diff,
            "mean_live_score": self.mean_live_score,
            "mean_shadow_score": self.mean_shadow_score,
        })
    }
}
