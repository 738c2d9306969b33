//! Drift monitoring: each scored request's features and score (from the guest, `tg_last_features`)
//! binned against the serving snapshot's reference (`scorer::snapshot::Reference`), counted over
//! a sliding window of the last N scored requests, compared by PSI, with alarms; and the rates of
//! missing or invalid request fields.
//!
//! The window counts requests, not seconds: PSI's noise floor depends on the number of samples
//! (about `bins / n` for equal distributions), so a fixed count gives a fixed floor under the
//! threshold whatever the traffic, and a quiet hour does not leave a window of ten requests that
//! alarms on chance. At 10,000 requests the floor is about 0.001 against a threshold of 0.2.

use memchr::memmem::Finder;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use scorer::snapshot::{Bins, Reference};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shares below this count as this in PSI, so that an empty bin gives a large but finite term.
pub const PSI_EPSILON: f64 = 1e-4;

/// Alarm transitions kept for the report.
const EVENTS_KEPT: usize = 64;

/// The population stability index of `actual` against `expected` (two distributions over the same
/// bins, each summing to 1): `sum (a - e) * ln(a / e)`, with shares below [`PSI_EPSILON`] raised
/// to it. Never negative; 0 for equal distributions. Rule of thumb: below 0.1 stable, above 0.2
/// shifted.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_EPSILON), a.max(PSI_EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// A feature label: the feature's name (`score` for the model's score in `drift_alarm`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    /// The feature.
    pub feature: String,
}

/// The drift metrics of a monitor, for a Prometheus registry: `feature_psi`, `score_psi`,
/// `drift_alarm` and `drift_window_samples`, set from a [`MonitorReport`] at each scrape (the
/// host's `/metrics` and the continuous exporter's).
#[derive(Clone, Debug, Default)]
pub struct DriftGauges {
    /// Per feature, PSI of the live window against the snapshot's reference.
    pub feature_psi: Family<FeatureLabel, Gauge<f64, AtomicU64>>,
    /// PSI of the score.
    pub score_psi: Gauge<f64, AtomicU64>,
    /// Per feature (and `score`), 1 while its drift alarm is on.
    pub drift_alarm: Family<FeatureLabel, Gauge>,
    /// Samples in the drift window.
    pub samples: Gauge,
}

impl DriftGauges {
    /// Registers the gauges in `registry`; `samples_help` says what the window counts.
    pub fn register(&self, registry: &mut Registry, samples_help: &str) {
        registry.register(
            "feature_psi",
            "PSI of each feature over the live window against the snapshot's reference",
            self.feature_psi.clone(),
        );
        registry.register("score_psi", "PSI of the score over the live window", self.score_psi.clone());
        registry.register(
            "drift_alarm",
            "1 while a feature's (or the score's) drift alarm is on",
            self.drift_alarm.clone(),
        );
        registry.register("drift_window_samples", samples_help, self.samples.clone());
    }

    /// Sets the gauges from a monitor report.
    pub fn set(&self, report: &MonitorReport) {
        self.feature_psi.clear();
        self.drift_alarm.clear();
        for s in &report.features {
            let label = FeatureLabel { feature: s.name.clone() };
            self.feature_psi.get_or_create(&label).set(s.psi);
            self.drift_alarm.get_or_create(&label).set(i64::from(s.alarm));
        }
        if let Some(s) = &report.score {
            self.drift_alarm.get_or_create(&FeatureLabel { feature: s.name.clone() }).set(i64::from(s.alarm));
        }
        self.score_psi.set(report.score.as_ref().map_or(0.0, |s| s.psi));
        self.samples.set(report.samples as i64);
    }
}

/// How the monitor judges drift. `Default` gives the values `tollgate serve` uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorConfig {
    /// The live window: the last this many requests the model scored (default 10,000).
    pub window: usize,
    /// A feature (or the score) alarms when its PSI is above this (default 0.2).
    pub threshold: f64,
    /// ... and the window holds at least this many requests (default 1,000).
    pub min_samples: usize,
    /// Alarms are re-evaluated every this many scored requests (default 500), and at each report.
    pub check_every: usize,
    /// Write each alarm's start and end to stderr (default true).
    pub log: bool,
    /// Features whose PSI is reported but never alarms. Default: the clock features
    /// `TX_DURING_WEEKEND` and `TX_DURING_NIGHT`, whose share follows the calendar: a window
    /// shorter than a week holds all-weekend or all-weekday traffic, and the first requests after
    /// a reset at midnight are all night ones. That is seasonality, not drift.
    pub no_alarm: Vec<String>,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            window: 10_000,
            threshold: 0.2,
            min_samples: 1_000,
            check_every: 500,
            log: true,
            no_alarm: vec!["TX_DURING_WEEKEND".to_string(), "TX_DURING_NIGHT".to_string()],
        }
    }
}

/// The label of `tollgate_invalid_fields_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvalidFieldLabel {
    /// The request field at fault (`amount`, `customer_id`, ...; `request` for the request as a
    /// whole).
    pub field: String,
    /// `missing` or `invalid`.
    pub problem: &'static str,
}

/// One feature's (or the score's) reference and live distributions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesReport {
    /// The feature's name (`score` for the model's score).
    pub name: String,
    /// PSI of the live window against the reference.
    pub psi: f64,
    /// Whether its alarm is on.
    pub alarm: bool,
    /// The bin edges (bin 0 is below the first edge, the last at or above the last edge).
    pub edges: Vec<f64>,
    /// The reference's share per bin.
    pub reference: Vec<f64>,
    /// The live window's share per bin.
    pub live: Vec<f64>,
}

/// An alarm starting or ending.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmEvent {
    /// Unix seconds.
    pub at: u64,
    /// The feature (or `score`).
    pub feature: String,
    /// `started` or `cleared`.
    pub alarm: &'static str,
    /// Its PSI then.
    pub psi: f64,
    /// Requests in the window then.
    pub samples: usize,
    /// The serving snapshot.
    pub snapshot_id: String,
}

/// The reference's window, as the report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReferenceWindow {
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive (the snapshot's as-of time).
    pub to: i64,
    /// Transactions in it.
    pub rows: u64,
}

/// Missing and invalid counts of one request field since the host started.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FieldCounts {
    /// Requests where the field was absent.
    pub missing: u64,
    /// Requests where it had a wrong type or value.
    pub invalid: u64,
}

/// What `/v1/monitoring` answers: the drift of every feature and the score, and field errors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MonitorReport {
    /// The serving snapshot (none before the first).
    pub snapshot_id: Option<String>,
    /// The reference's window (none when the snapshot carries no reference).
    pub reference: Option<ReferenceWindow>,
    /// The configured window size.
    pub window: usize,
    /// Requests the model scored that the window holds now.
    pub samples: usize,
    /// Alarm threshold on PSI.
    pub threshold: f64,
    /// Fewest samples for an alarm.
    pub min_samples: usize,
    /// Requests seen since this snapshot started serving (scored or not).
    pub requests: u64,
    /// Of those, requests the model did not score (an error, or a hard rule decided).
    pub unscored: u64,
    /// Per feature, in schema order.
    pub features: Vec<SeriesReport>,
    /// The score (none without a model or a score reference).
    pub score: Option<SeriesReport>,
    /// Names of features (and `score`) whose alarm is on.
    pub alarms: Vec<String>,
    /// Per request field, missing and invalid counts since the host started.
    pub invalid_fields: std::collections::BTreeMap<String, FieldCounts>,
    /// The latest alarm starts and ends, oldest first.
    pub events: Vec<AlarmEvent>,
}

/// One tracked distribution.
struct Series {
    name: String,
    /// Listed in [`MonitorConfig::no_alarm`].
    quiet: bool,
    bins: Bins,
    counts: Vec<u64>,
    alarm: bool,
    psi: f64,
}

impl Series {
    fn live(&self, samples: usize) -> Vec<f64> {
        let n = samples.max(1) as f64;
        self.counts.iter().map(|&c| c as f64 / n).collect()
    }
}

/// What the window holds; replaced when a snapshot with another id starts serving.
#[derive(Default)]
struct State {
    snapshot_id: Option<String>,
    reference: Option<ReferenceWindow>,
    /// The schema's feature count: rows of `tg_last_features` have one more value.
    n_features: usize,
    /// Features in schema order, then the score when the reference has one.
    series: Vec<Series>,
    /// The window's bins, `series.len()` bytes per request, oldest overwritten first.
    ring: Vec<u8>,
    next: usize,
    samples: usize,
    since_check: usize,
    requests: u64,
    unscored: u64,
    invalid: std::collections::BTreeMap<String, FieldCounts>,
    events: VecDeque<AlarmEvent>,
}

/// The drift monitor of one host (shared by every thread; the lock is held for a few hundred
/// nanoseconds per request).
pub struct Monitor {
    config: MonitorConfig,
    state: Mutex<State>,
    invalid_total: Family<InvalidFieldLabel, Counter>,
}

/// The bin index a ring slot holds for "no value" (a NaN feature).
const NO_BIN: u8 = u8::MAX;

impl Monitor {
    /// A monitor with no snapshot yet.
    pub fn new(config: MonitorConfig) -> Monitor {
        Monitor { config, state: Mutex::new(State::default()), invalid_total: Family::default() }
    }

    /// Its configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The counter family behind `tollgate_invalid_fields_total` (the service registers it).
    pub fn invalid_fields(&self) -> &Family<InvalidFieldLabel, Counter> {
        &self.invalid_total
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching a snapshot: `feature_names` in schema order and its reference, if any. A
    /// snapshot with the id already watched changes nothing (a module swap keeps the window);
    /// any other empties the window.
    pub fn watch(&self, snapshot_id: &str, feature_names: Vec<String>, reference: Option<&Reference>) {
        let mut st = self.lock();
        if st.snapshot_id.as_deref() == Some(snapshot_id) {
            return;
        }
        let n_features = feature_names.len();
        let mut series: Vec<Series> = Vec::new();
        if let Some(r) = reference.filter(|r| r.features.len() == n_features) {
            let named = feature_names.into_iter().zip(r.features.iter().cloned());
            let score = r.score.iter().cloned().map(|b| ("score".to_string(), b));
            series = named
                .chain(score)
                // At most MAX_EDGES + 1 = 65 bins (the decoder checks), so bin numbers fit a u8.
                .map(|(name, bins)| Series {
                    counts: vec![0; bins.len()],
                    quiet: self.config.no_alarm.contains(&name),
                    name,
                    bins,
                    alarm: false,
                    psi: 0.0,
                })
                .collect();
        }
        let invalid = std::mem::take(&mut st.invalid);
        let events = std::mem::take(&mut st.events);
        *st = State {
            snapshot_id: Some(snapshot_id.to_string()),
            reference: reference.map(|r| ReferenceWindow { from: r.from.0, to: r.to.0, rows: r.rows }),
            n_features,
            ring: vec![NO_BIN; self.config.window.max(1) * series.len()],
            series,
            invalid,
            events,
            ..State::default()
        };
    }

    /// Records the `tg_last_features` rows of one call answered by `snapshot_id` (little-endian
    /// f64, `n + 1` per request). Rows from another snapshot than the watched one are ignored
    /// (a request that started before a swap). Returns how many rows the model did not score.
    pub fn record(&self, snapshot_id: &str, bytes: &[u8]) -> u64 {
        let mut st = self.lock();
        if st.snapshot_id.as_deref() != Some(snapshot_id) {
            return 0;
        }
        let unscored_before = st.unscored;
        let width = (st.n_features + 1) * 8;
        let State { series, ring, next, samples, since_check, requests, unscored, n_features, .. } = &mut *st;
        let n_series = series.len();
        let has_score = n_series > *n_features;
        for row in bytes.chunks_exact(width) {
            *requests += 1;
            let value = |i: usize| f64::from_le_bytes(row[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let score = value(*n_features);
            if score.is_nan() {
                *unscored += 1;
                continue;
            }
            if n_series == 0 {
                continue;
            }
            let slot = &mut ring[*next * n_series..(*next + 1) * n_series];
            for (s, (series, old)) in series.iter_mut().zip(slot.iter_mut()).enumerate() {
                let v = if has_score && s == n_series - 1 { score } else { value(s) };
                if *old != NO_BIN {
                    series.counts[usize::from(*old)] -= 1;
                }
                // Bins number at most 65, fewer than NO_BIN.
                *old = series.bins.bin(v).map_or(NO_BIN, |b| b as u8);
                if *old != NO_BIN {
                    series.counts[usize::from(*old)] += 1;
                }
            }
            *next = (*next + 1) % self.config.window.max(1);
            *samples = (*samples + 1).min(self.config.window.max(1));
            *since_check += 1;
        }
        if st.since_check >= self.config.check_every.max(1) {
            self.check(&mut st);
        }
        st.unscored - unscored_before
    }

    /// Counts the missing and invalid fields named by the error responses in `body` (one
    /// response or an array of them, JSON or MessagePack). Cheap when there is none: one search
    /// for `ok: false`.
    pub fn count_errors(&self, body: &[u8]) {
        // Built once: building a finder costs about as much as searching one response.
        static JSON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""ok":false"#));
        static MSGPACK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\xa2ok\xc2"));
        let marker = match crate::wire::Format::sniff(body) {
            crate::wire::Format::Json => &*JSON,
            crate::wire::Format::MsgPack => &*MSGPACK,
        };
        if marker.find(body).is_none() {
            return;
        }
        let count = |v: &serde_json::Value| {
            if v["ok"] != serde_json::Value::Bool(false) || v["error_kind"] != "bad_request" {
                return;
            }
            let field = v["field"].as_str().unwrap_or("request");
            let missing = v["error"].as_str().is_some_and(|e| e.ends_with("is missing"));
            self.count_field(field, missing);
        };
        match crate::wire::parse(body) {
            Ok(serde_json::Value::Array(items)) => items.iter().for_each(count),
            Ok(v) => count(&v),
            Err(_) => {}
        }
    }

    /// Counts a missing (`missing == true`) or invalid request field.
    pub fn count_field(&self, field: &str, missing: bool) {
        let problem = if missing { "missing" } else { "invalid" };
        self.invalid_total.get_or_create(&InvalidFieldLabel { field: field.to_string(), problem }).inc();
        let mut st = self.lock();
        let counts = st.invalid.entry(field.to_string()).or_default();
        if missing {
            counts.missing += 1;
        } else {
            counts.invalid += 1;
        }
    }

    /// Recomputes every PSI and turns alarms on or off, logging each change once.
    fn check(&self, st: &mut State) {
        st.since_check = 0;
        let samples = st.samples;
        let enough = samples >= self.config.min_samples;
        let id = st.snapshot_id.clone().unwrap_or_default();
        let mut changes = Vec::new();
        for s in &mut st.series {
            s.psi = psi(&s.bins.proportions, &s.live(samples));
            let alarm = enough && !s.quiet && s.psi > self.config.threshold;
            if alarm != s.alarm {
                s.alarm = alarm;
                changes.push((s.name.clone(), alarm, s.psi));
            }
        }
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        for (feature, on, psi) in changes {
            if self.config.log {
                let what = if on { "started" } else { "cleared" };
                eprintln!(
                    "drift alarm {what}: {feature} PSI {psi:.3} (threshold {}) over the last {samples} requests, snapshot {id}",
                    self.config.threshold
                );
            }
            if st.events.len() == EVENTS_KEPT {
                st.events.pop_front();
            }
            let alarm = if on { "started" } else { "cleared" };
            st.events.push_back(AlarmEvent { at, feature, alarm, psi, samples, snapshot_id: id.clone() });
        }
    }

    /// The current drift of every feature and the score (alarms re-evaluated now).
    pub fn report(&self) -> MonitorReport {
        let mut st = self.lock();
        self.check(&mut st);
        let samples = st.samples;
        let mut series: Vec<SeriesReport> = st
            .series
            .iter()
            .map(|s| SeriesReport {
                name: s.name.clone(),
                psi: s.psi,
                alarm: s.alarm,
                edges: s.bins.edges.clone(),
                reference: s.bins.proportions.clone(),
                live: s.live(samples),
            })
            .collect();
        let score = (series.len() > st.n_features).then(|| series.pop()).flatten();
        let alarms = series.iter().chain(&score).filter(|s| s.alarm).map(|s| s.name.clone()).collect();
        MonitorReport {
            snapshot_id: st.snapshot_id.clone(),
            reference: st.reference.clone(),
            window: self.config.window,
            samples,
            threshold: self.config.threshold,
            min_samples: self.config.min_samples,
            requests: st.requests,
            unscored: st.unscored,
            features: series,
            score,
            alarms,
            invalid_fields: st.invalid.clone(),
            events: st.events.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use scorer::Timestamp;

    #[test]
    fn psi_of_hand_checkable_distributions() {
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        // (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5) = 0.25 ln 3
        let p = psi(&[0.5, 0.5], &[0.25, 0.75]);
        assert!((p - 0.25 * 3f64.ln()).abs() < 1e-12, "{p}");
        // An empty live bin counts as 1e-4: (1e-4 - 0.5) ln(2e-4) + (1 - 0.5) ln(2).
        let p = psi(&[0.5, 0.5], &[0.0, 1.0]);
        let want = (1e-4 - 0.5) * (1e-4f64 / 0.5).ln() + 0.5 * 2f64.ln();
        assert!((p - want).abs() < 1e-12, "{p} vs {want}");
    }

    proptest! {
        #[test]
        fn psi_is_never_negative_and_zero_for_equal_distributions(
            weights in prop::collection::vec((0u32..1000, 0u32..1000), 1..20)
        ) {
            let norm = |v: Vec<f64>| { let s: f64 = v.iter().sum::<f64>().max(1.0); v.into_iter().map(|x| x / s).collect::<Vec<_>>() };
            let e = norm(weights.iter().map(|w| f64::from(w.0)).collect());
            let a = norm(weights.iter().map(|w| f64::from(w.1)).collect());
            prop_assert!(psi(&e, &a) >= 0.0);
            prop_assert_eq!(psi(&e, &e), 0.0);
        }
    }

    fn reference() -> Reference {
        let half = || Bins { edges: vec![10.0], proportions: vec![0.5, 0.5] };
        Reference {
            from: Timestamp(0),
            to: Timestamp(100),
            rows: 1000,
            features: vec![half()],
            score: Some(half()),
        }
    }

    fn rows(values: &[(f64, f64)]) -> Vec<u8> {
        values.iter().flat_map(|(f, s)| [f.to_le_bytes(), s.to_le_bytes()]).flatten().collect()
    }

    #[test]
    fn the_window_slides_and_alarms_start_and_clear_once() {
        let config =
            MonitorConfig { window: 100, min_samples: 50, check_every: 10, log: false, ..Default::default() };
        let m = Monitor::new(config);
        m.watch("snap-a", vec!["AMOUNT".into()], Some(&reference()));
        // Balanced traffic: no alarm.
        for i in 0..100 {
            let v = if i % 2 == 0 { 5.0 } else { 15.0 };
            m.record("snap-a", &rows(&[(v, v)]));
        }
        let r = m.report();
        assert_eq!((r.samples, r.features[0].psi, r.alarms.len()), (100, 0.0, 0));
        assert_eq!(r.features[0].live, vec![0.5, 0.5]);
        // Every amount high: the feature drifts, the score does not.
        for _ in 0..100 {
            m.record("snap-a", &rows(&[(20.0, 5.0), (20.0, 15.0)]));
        }
        let r = m.report();
        assert_eq!(r.features[0].live, vec![0.0, 1.0]);
        assert_eq!(r.alarms, vec!["AMOUNT".to_string()]);
        assert!(r.features[0].psi > 0.2 && r.score.as_ref().is_some_and(|s| s.psi == 0.0));
        // Balanced again: the alarm clears; the events say so once each.
        for i in 0..100 {
            let v = if i % 2 == 0 { 5.0 } else { 15.0 };
            m.record("snap-a", &rows(&[(v, v)]));
        }
        let r = m.report();
        assert!(r.alarms.is_empty());
        let events: Vec<_> = r.events.iter().map(|e| (e.feature.as_str(), e.alarm)).collect();
        assert_eq!(events, vec![("AMOUNT", "started"), ("AMOUNT", "cleared")]);
    }

    #[test]
    fn unscored_rows_are_counted_and_other_snapshots_ignored_and_a_new_snapshot_resets() {
        let m = Monitor::new(MonitorConfig { log: false, ..Default::default() });
        m.watch("snap-a", vec!["AMOUNT".into()], Some(&reference()));
        m.record("snap-a", &rows(&[(1.0, 0.1), (f64::NAN, f64::NAN)]));
        m.record("snap-old", &rows(&[(1.0, 0.1)]));
        let r = m.report();
        assert_eq!((r.requests, r.unscored, r.samples), (2, 1, 1));
        m.watch("snap-a", vec!["AMOUNT".into()], Some(&reference()));
        assert_eq!(m.report().samples, 1, "the same snapshot keeps its window");
        m.count_field("amount", false);
        m.watch("snap-b", vec!["AMOUNT".into()], None);
        let r = m.report();
        assert_eq!((r.samples, r.requests, r.features.len(), r.reference), (0, 0, 0, None));
        assert_eq!(r.invalid_fields["amount"], FieldCounts { missing: 0, invalid: 1 });
    }

    #[test]
    fn alarms_wait_for_the_minimum_number_of_samples() {
        let config =
            MonitorConfig { window: 100, min_samples: 50, check_every: 1, log: false, ..Default::default() };
        let m = Monitor::new(config);
        m.watch("s", vec!["AMOUNT".into()], Some(&reference()));
        for _ in 0..49 {
            m.record("s", &rows(&[(20.0, 5.0)]));
        }
        assert!(m.report().alarms.is_empty());
        m.record("s", &rows(&[(20.0, 5.0)]));
        assert_eq!(m.report().alarms, vec!["AMOUNT".to_string(), "score".to_string()]);
    }
}
