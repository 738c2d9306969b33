//! Exact windowed aggregates of one entity, maintained as its transactions stream by in time
//! order. The exporter uses it for exact (lag 0) features and to build snapshots; both call
//! [`EntityWindows::advance_to`] and [`EntityWindows::aggregates`], so they cannot disagree.

use super::schema::{Aggregate, Aggregates, EntityLayout};
use crate::Timestamp;
use crate::time::SECONDS_PER_DAY;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug)]
struct Event {
    time: i64,
    // The amount on the fixed-point grid, converted once when pushed.
    amount: i128,
    fraud: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct WindowState {
    // Absolute index of the next event to enter / to leave the window.
    enter: u64,
    exit: u64,
    count: u64,
    // Exact fixed-point sum (units of 2^-64): the same window contents give the same bits
    // whatever order transactions entered and left it, which a running f64 sum does not.
    amount_sum: i128,
    frauds: u64,
}

/// 2^64: the fixed-point scale of amount sums.
const SCALE: f64 = 18_446_744_073_709_551_616.0;

/// An amount on the 2^-64 grid (exact for every amount from 2^-12 up to 2^63; below, truncated,
/// the same way every time).
fn fixed(amount: f64) -> i128 {
    (amount * SCALE) as i128
}

/// The recent transactions of one entity and its running aggregates per window.
///
/// Windows follow the schema: `(T - (days + delay) days, T - delay days]` for the time `T` given
/// to [`advance_to`](EntityWindows::advance_to), over the transactions [`push`](EntityWindows::push)ed so far.
#[derive(Clone, Debug, Default)]
pub struct EntityWindows {
    events: VecDeque<Event>,
    // Number of events dropped from the front of `events`.
    dropped: u64,
    windows: Vec<WindowState>,
}

impl EntityWindows {
    /// State of an entity with no transactions, for `layout`.
    pub fn new(layout: &EntityLayout) -> EntityWindows {
        EntityWindows {
            events: VecDeque::new(),
            dropped: 0,
            windows: alloc::vec![WindowState::default(); layout.windows.len()],
        }
    }

    /// Records a transaction of this entity. Transactions must be pushed in time order.
    pub fn push(&mut self, time: Timestamp, amount: f64, fraud: bool) {
        self.events.push_back(Event { time: time.0, amount: fixed(amount), fraud });
    }

    /// Moves every window to end at `now`: transactions pushed so far enter a window once
    /// `time <= now - delay` and leave it once `time <= now - (days + delay)`.
    /// `now` must not go backwards between calls.
    pub fn advance_to(&mut self, layout: &EntityLayout, now: Timestamp) {
        let end = self.dropped + self.events.len() as u64;
        for (state, window) in self.windows.iter_mut().zip(&layout.windows) {
            let delay = i64::from(window.delay_days) * SECONDS_PER_DAY;
            let span = i64::from(window.days) * SECONDS_PER_DAY + delay;
            while state.enter < end {
                let e = self.events[(state.enter - self.dropped) as usize];
                if e.time > now.0 - delay {
                    break;
                }
                state.count += 1;
                state.amount_sum = state.amount_sum.wrapping_add(e.amount);
                state.frauds += u64::from(e.fraud);
                state.enter += 1;
            }
            while state.exit < state.enter {
                let e = self.events[(state.exit - self.dropped) as usize];
                if e.time > now.0 - span {
                    break;
                }
                state.count -= 1;
                state.amount_sum = state.amount_sum.wrapping_sub(e.amount);
                state.frauds -= u64::from(e.fraud);
                state.exit += 1;
            }
        }
        let oldest_needed = self.windows.iter().map(|w| w.exit).min().unwrap_or(end);
        while self.dropped < oldest_needed {
            self.events.pop_front();
            self.dropped += 1;
        }
    }

    /// The aggregates as of the last [`advance_to`](EntityWindows::advance_to), in `layout`'s slot order.
    pub fn aggregates(&self, layout: &EntityLayout) -> Aggregates {
        let mut out = Aggregates::ZERO;
        for (value, slot) in out.0.iter_mut().zip(&layout.slots) {
            let Some(w) = layout.windows.iter().position(|w| *w == slot.window) else { continue };
            let state = &self.windows[w];
            *value = match slot.aggregate {
                Aggregate::Count => state.count as f64,
                // Wrapping arithmetic is exact modulo 2^128, so the sum is right whenever the
                // window's true sum fits; the conversion rounds to nearest, the same everywhere.
                Aggregate::AmountSum => state.amount_sum as f64 / SCALE,
                Aggregate::FraudCount => state.frauds as f64,
            };
        }
        out
    }

    /// Number of transactions still held (those some window may yet need).
    pub fn held(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureSchema;

    const DAY: i64 = SECONDS_PER_DAY;

    #[test]
    fn windows_include_their_end_and_exclude_their_start() {
        let schema = FeatureSchema::handbook();
        let layout = &schema.entities()[0].layout; // windows 1, 7, 30 days, no delay
        let mut w = EntityWindows::new(layout);
        let t0 = Timestamp(1_000 * DAY);
        w.push(t0, 10.0, false);
        w.push(t0.plus_seconds(3600), 20.0, false);
        // Exactly one day after the first: the first has left the 1-day window (t - 1 day, t].
        w.advance_to(layout, t0.plus_seconds(DAY));
        let a = w.aggregates(layout);
        assert_eq!(&a.0[..6], &[1.0, 20.0, 2.0, 30.0, 2.0, 30.0]);
        w.advance_to(layout, t0.plus_seconds(30 * DAY + 3600));
        assert_eq!(&w.aggregates(layout).0[..6], &[0.0; 6]);
        assert_eq!(w.held(), 0, "events no window needs are dropped");
    }

    #[test]
    fn delayed_windows_count_labels_only_after_the_delay() {
        let schema = FeatureSchema::handbook();
        let layout = &schema.entities()[1].layout; // windows 1, 7, 30 days, delayed 7 days
        let mut w = EntityWindows::new(layout);
        let t0 = Timestamp(1_000 * DAY);
        w.push(t0, 10.0, true);
        w.advance_to(layout, t0.plus_seconds(7 * DAY - 1));
        assert_eq!(&w.aggregates(layout).0[..6], &[0.0; 6], "not yet 7 days old");
        w.advance_to(layout, t0.plus_seconds(7 * DAY));
        // Slots: count/frauds for 1, 7, 30 days.
        assert_eq!(&w.aggregates(layout).0[..6], &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        w.advance_to(layout, t0.plus_seconds(8 * DAY));
        assert_eq!(&w.aggregates(layout).0[..6], &[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    }

    proptest::proptest! {
        #[test]
        fn aggregates_do_not_depend_on_when_windows_were_advanced(
            events in proptest::collection::vec((0i64..4 * DAY, 0.0f64..10_000.0, proptest::bool::ANY, proptest::bool::ANY), 1..200),
        ) {
            let schema = FeatureSchema::handbook();
            let mut events = events;
            events.sort_by_key(|e| e.0);
            for layout in schema.entities().iter().map(|e| &e.layout) {
                let (mut eager, mut lazy) = (EntityWindows::new(layout), EntityWindows::new(layout));
                for &(t, amount, fraud, advance) in &events {
                    let t = Timestamp(t);
                    eager.advance_to(layout, t);
                    if advance {
                        lazy.advance_to(layout, t);
                    }
                    eager.push(t, (amount * 100.0).round() / 100.0, fraud);
                    lazy.push(t, (amount * 100.0).round() / 100.0, fraud);
                }
                let end = Timestamp(events[events.len() - 1].0 + DAY / 2);
                eager.advance_to(layout, end);
                lazy.advance_to(layout, end);
                let bits = |a: Aggregates| a.0.map(f64::to_bits);
                proptest::prop_assert_eq!(bits(eager.aggregates(layout)), bits(lazy.aggregates(layout)));
            }
        }
    }
}
