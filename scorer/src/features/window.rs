//! Exact windowed aggregates of one entity, maintained as its transactions stream by in time
//! order. The exporter uses it for exact (lag 0) features and to build snapshots; both call
//! [`EntityWindows::advance_to`] and [`EntityWindows::aggregates`], so they cannot disagree.
//! The pieces they are made of ([`Window::start`], [`Window::end`], [`FixedAmount`],
//! [`WindowTotals`]) are public for code that advances many entities' windows at once.

use super::schema::{Aggregate, Aggregates, EntityLayout, Window};
use crate::Timestamp;
use crate::time::SECONDS_PER_DAY;
use alloc::collections::VecDeque;
use smallvec::SmallVec;

impl Window {
    /// The window's (inclusive) end at `now`, in Unix seconds: a transaction at `t` has entered
    /// it once `t <= end`.
    #[inline]
    pub fn end(self, now: Timestamp) -> i64 {
        now.0 - i64::from(self.delay_days) * SECONDS_PER_DAY
    }

    /// The window's (exclusive) start at `now`, in Unix seconds: a transaction at `t` has left
    /// it once `t <= start`.
    #[inline]
    pub fn start(self, now: Timestamp) -> i64 {
        now.0 - (i64::from(self.days) * SECONDS_PER_DAY + i64::from(self.delay_days) * SECONDS_PER_DAY)
    }
}

/// 2^64: the fixed-point scale of amount sums.
const SCALE: f64 = 18_446_744_073_709_551_616.0;

/// An amount, or a sum of amounts, as an exact fixed-point integer in units of 2^-64: the same
/// window contents give the same bits whatever order transactions entered and left it, which a
/// running f64 sum does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FixedAmount(i128);

impl FixedAmount {
    /// Nothing.
    pub const ZERO: FixedAmount = FixedAmount(0);

    /// `amount` on the grid (exact for every amount from 2^-12 up to 2^63; below, truncated,
    /// the same way every time).
    #[inline]
    pub fn from_f64(amount: f64) -> FixedAmount {
        // `(amount * SCALE) as i128`, spelled out: the library call it compiles to costs more
        // than the rest of a window step. `fixed_point_conversions_are_the_casts` proves them equal.
        let x = amount * SCALE;
        let bits = x.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i32;
        if exponent < 1023 {
            // |x| < 1, zeros and subnormals included: truncates to 0.
            return FixedAmount::ZERO;
        }
        if exponent >= 1023 + 127 {
            // |x| >= 2^127, infinities, NaN: saturating (NaN to 0), as the cast does.
            return FixedAmount(x as i128);
        }
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        let shift = exponent - 1023 - 52;
        let magnitude =
            if shift >= 0 { u128::from(mantissa) << shift } else { u128::from(mantissa >> -shift) };
        // magnitude < 2^127: it fits, and so does its negation.
        let magnitude = magnitude as i128;
        FixedAmount(if bits >> 63 == 1 { -magnitude } else { magnitude })
    }

    /// The raw fixed-point value (two's complement), for compact storage.
    #[inline]
    pub fn to_bits(self) -> u128 {
        self.0 as u128
    }

    /// The value whose [`FixedAmount::to_bits`] are `bits`.
    #[inline]
    pub fn from_bits(bits: u128) -> FixedAmount {
        FixedAmount(bits as i128)
    }

    /// `self + other`, wrapping: exact modulo 2^128, so a sum is right whenever its true value
    /// fits, whatever the order of the additions and subtractions.
    #[must_use]
    #[inline]
    pub fn wrapping_add(self, other: FixedAmount) -> FixedAmount {
        FixedAmount(self.0.wrapping_add(other.0))
    }

    /// `self - other`, wrapping (see [`FixedAmount::wrapping_add`]).
    #[must_use]
    #[inline]
    pub fn wrapping_sub(self, other: FixedAmount) -> FixedAmount {
        FixedAmount(self.0.wrapping_sub(other.0))
    }

    /// The value as f64, rounded to nearest: the same everywhere.
    #[inline]
    pub fn to_f64(self) -> f64 {
        i128_to_f64(self.0) / SCALE
    }
}

/// `x as f64` (round to nearest, ties to even), spelled out for speed; see
/// [`FixedAmount::from_f64`].
#[inline]
fn i128_to_f64(x: i128) -> f64 {
    if let Ok(small) = i64::try_from(x) {
        return small as f64;
    }
    // |x| >= 2^63: its top 64 bits, with a sticky bit for any below, round exactly as x does
    // (the rounding point is 11 bits down; the sticky bit only breaks would-be ties).
    let magnitude = x.unsigned_abs();
    let zeros = magnitude.leading_zeros(); // at most 64
    let normalized = magnitude << zeros;
    let top = (normalized >> 64) as u64 | u64::from(normalized as u64 != 0);
    // Times 2^(64 - zeros), a power of two: exact.
    let value = top as f64 * f64::from_bits(u64::from(1023 + 64 - zeros) << 52);
    if x < 0 { -value } else { value }
}

/// What one window holds at one time: its number of transactions, their amount sum and their
/// number of frauds. [`WindowTotals::value`] turns them into a slot's aggregate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowTotals {
    /// Number of transactions.
    pub count: u64,
    /// Sum of their amounts.
    pub amount: FixedAmount,
    /// Number of frauds among them.
    pub frauds: u64,
}

impl WindowTotals {
    /// Adds a transaction (its amount already on the grid).
    #[inline]
    pub fn add(&mut self, amount: FixedAmount, fraud: bool) {
        self.count += 1;
        self.amount = self.amount.wrapping_add(amount);
        self.frauds += u64::from(fraud);
    }

    /// Removes a transaction added before.
    #[inline]
    pub fn remove(&mut self, amount: FixedAmount, fraud: bool) {
        self.count -= 1;
        self.amount = self.amount.wrapping_sub(amount);
        self.frauds -= u64::from(fraud);
    }

    /// The aggregate a slot stores for this window.
    #[inline]
    pub fn value(&self, aggregate: Aggregate) -> f64 {
        match aggregate {
            Aggregate::Count => self.count as f64,
            Aggregate::AmountSum => self.amount.to_f64(),
            Aggregate::FraudCount => self.frauds as f64,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Event {
    time: i64,
    // The amount on the fixed-point grid, converted once when pushed.
    amount: FixedAmount,
    fraud: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct WindowState {
    // Absolute index of the next event to enter / to leave the window.
    enter: u64,
    exit: u64,
    // The time of the event at `enter` (meaningful while `enter` < the end) and at `exit` (while
    // `exit < enter`): an advance that moves nothing reads no event (a cache miss each, most of
    // the cost of a step when many entities are held).
    next_enter: i64,
    next_exit: i64,
    totals: WindowTotals,
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
    // Inline for the usual three windows: the states sit next to the rest, not behind a pointer.
    windows: SmallVec<[WindowState; 3]>,
}

impl EntityWindows {
    /// State of an entity with no transactions, for `layout`.
    pub fn new(layout: &EntityLayout) -> EntityWindows {
        EntityWindows {
            events: VecDeque::new(),
            dropped: 0,
            windows: smallvec::smallvec![WindowState::default(); layout.windows.len()],
        }
    }

    /// State of an entity that has held `first_index` transactions before, none of them still
    /// held: the start of [`EntityWindows::resume_push`]es that rebuild a saved state (see
    /// [`EntityWindows::first_index`] and [`EntityWindows::events`]).
    pub fn resume(layout: &EntityLayout, first_index: u64) -> EntityWindows {
        let start = WindowState { enter: first_index, exit: first_index, ..WindowState::default() };
        EntityWindows {
            events: VecDeque::new(),
            dropped: first_index,
            windows: smallvec::smallvec![start; layout.windows.len()],
        }
    }

    /// Records a transaction of this entity and returns its absolute index (0 for the entity's
    /// first transaction ever), the handle [`EntityWindows::set_fraud`] takes. Transactions must
    /// be pushed in time order.
    pub fn push(&mut self, time: Timestamp, amount: f64, fraud: bool) -> u64 {
        self.resume_push(time, FixedAmount::from_f64(amount), fraud)
    }

    /// [`EntityWindows::push`] with the amount already on the grid (as [`EntityWindows::events`]
    /// gives it back).
    pub fn resume_push(&mut self, time: Timestamp, amount: FixedAmount, fraud: bool) -> u64 {
        let index = self.dropped + self.events.len() as u64;
        for state in &mut self.windows {
            if state.enter == index {
                state.next_enter = time.0;
            }
        }
        self.events.push_back(Event { time: time.0, amount, fraud });
        index
    }

    /// Sets the fraud flag of the transaction at absolute `index` (from [`EntityWindows::push`]):
    /// the windows that hold it now have their totals fixed at once, the windows it has yet to
    /// enter count it with the new flag when it does, the windows it has left are not touched.
    /// So a label set before a transaction enters a (delayed) window counts there exactly as if
    /// it had been pushed with it; a label set later counts from the last
    /// [`advance_to`](EntityWindows::advance_to) on. False when the transaction is no longer held
    /// (it has left every window) or was never pushed.
    pub fn set_fraud(&mut self, index: u64, fraud: bool) -> bool {
        let Some(at) = index.checked_sub(self.dropped) else { return false };
        let Some(event) = self.events.get_mut(at as usize) else { return false };
        if event.fraud == fraud {
            return true;
        }
        let old = event.fraud;
        event.fraud = fraud;
        let amount = event.amount;
        for state in &mut self.windows {
            if state.exit <= index && index < state.enter {
                state.totals.remove(amount, old);
                state.totals.add(amount, fraud);
            }
        }
        true
    }

    /// Absolute index of the oldest transaction still held (the number dropped so far).
    pub fn first_index(&self) -> u64 {
        self.dropped
    }

    /// The transactions still held, oldest first, with the amounts on the grid: with
    /// [`EntityWindows::first_index`], [`EntityWindows::resume`] and
    /// [`EntityWindows::resume_push`] they rebuild this state exactly (advanced to the same time).
    pub fn events(&self) -> impl ExactSizeIterator<Item = (Timestamp, FixedAmount, bool)> + '_ {
        self.events.iter().map(|e| (Timestamp(e.time), e.amount, e.fraud))
    }

    /// Reads what the next [`advance_to`](EntityWindows::advance_to) will start with (the window
    /// states and the oldest event of each window), changing nothing: called for several
    /// entities before advancing any of them, their cache misses overlap instead of following
    /// one another.
    #[inline]
    pub fn prefetch(&self) {
        for state in &self.windows {
            let next = state.exit.wrapping_sub(self.dropped) as usize;
            core::hint::black_box(self.events.get(next).map(|e| e.time));
        }
    }

    /// Moves every window to end at `now`: transactions pushed so far enter a window once
    /// `time <= now - delay` and leave it once `time <= now - (days + delay)`.
    /// `now` must not go backwards between calls.
    pub fn advance_to(&mut self, layout: &EntityLayout, now: Timestamp) {
        let end = self.dropped + self.events.len() as u64;
        for (state, window) in self.windows.iter_mut().zip(&layout.windows) {
            let (last_in, last_out) = (window.end(now), window.start(now));
            if state.enter < end && state.next_enter <= last_in {
                let was_empty = state.exit == state.enter;
                loop {
                    let e = self.events[(state.enter - self.dropped) as usize];
                    state.totals.add(e.amount, e.fraud);
                    state.enter += 1;
                    if state.enter == end {
                        break;
                    }
                    state.next_enter = self.events[(state.enter - self.dropped) as usize].time;
                    if state.next_enter > last_in {
                        break;
                    }
                }
                if was_empty {
                    state.next_exit = self.events[(state.exit - self.dropped) as usize].time;
                }
            }
            if state.exit < state.enter && state.next_exit <= last_out {
                loop {
                    let e = self.events[(state.exit - self.dropped) as usize];
                    state.totals.remove(e.amount, e.fraud);
                    state.exit += 1;
                    if state.exit == state.enter {
                        break;
                    }
                    state.next_exit = self.events[(state.exit - self.dropped) as usize].time;
                    if state.next_exit > last_out {
                        break;
                    }
                }
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
            *value = self.windows[w].totals.value(slot.aggregate);
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
    use alloc::vec::Vec;

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

    #[test]
    fn fixed_point_conversions_are_the_casts_at_the_edges() {
        let amounts = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.01,
            57.16,
            -57.16,
            1e-30,
            -1e-30,
            5e-324,
            f64::MIN_POSITIVE,
            2f64.powi(-12),
            2f64.powi(-64),
            2f64.powi(-65),
            2f64.powi(62),
            2f64.powi(63),
            -2f64.powi(63),
            2f64.powi(64),
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for a in amounts {
            assert_eq!(FixedAmount::from_f64(a).0, (a * SCALE) as i128, "{a:e}");
        }
        let sums = [
            0i128,
            1,
            -1,
            i128::MAX,
            i128::MIN,
            i128::MIN + 1,
            i64::MAX as i128,
            i64::MIN as i128,
            i64::MAX as i128 + 1,
            i64::MIN as i128 - 1,
            1 << 64,
            (1 << 64) + 1,
            (1 << 117) + (1 << 64) + 1,
            (1 << 117) + (1 << 64),
            (1 << 117) + (3 << 64),
            -((1 << 117) + (1 << 64) + 1),
            ((1 << 53) - 1) << 70,
            (((1 << 53) - 1) << 70) + (1 << 69),
            (((1 << 53) - 1) << 70) + (1 << 69) - 1,
        ];
        for x in sums {
            assert_eq!(i128_to_f64(x).to_bits(), (x as f64).to_bits(), "{x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fixed_point_conversions_are_the_casts(bits: u64, amount in -1e7f64..1e7, high: i64, low: u64, shift in 0u32..128) {
            let a = f64::from_bits(bits);
            proptest::prop_assert_eq!(FixedAmount::from_f64(a).0, (a * SCALE) as i128);
            proptest::prop_assert_eq!(FixedAmount::from_f64(amount).0, (amount * SCALE) as i128);
            let x = ((i128::from(high) << 64) | i128::from(low)) >> shift;
            proptest::prop_assert_eq!(i128_to_f64(x).to_bits(), (x as f64).to_bits());
        }
    }

    #[test]
    fn set_fraud_fixes_the_windows_that_hold_the_transaction_and_only_those() {
        let schema = FeatureSchema::handbook();
        let layout = &schema.entities()[1].layout; // 1, 7, 30 days, delayed 7 days
        let mut w = EntityWindows::new(layout);
        let t0 = Timestamp(1_000 * DAY);
        assert_eq!(w.push(t0, 10.0, false), 0);
        assert_eq!(w.push(t0.plus_seconds(60), 5.0, false), 1);
        // In the delayed windows from t0 + 7 days; a label at t0 + 7.5 days counts from then on.
        w.advance_to(layout, t0.plus_seconds(7 * DAY + DAY / 2));
        assert_eq!(&w.aggregates(layout).0[..6], &[2.0, 0.0, 2.0, 0.0, 2.0, 0.0]);
        assert!(w.set_fraud(0, true));
        assert_eq!(&w.aggregates(layout).0[..6], &[2.0, 1.0, 2.0, 1.0, 2.0, 1.0]);
        assert!(w.set_fraud(0, false), "a false label clears an earlier one");
        assert_eq!(&w.aggregates(layout).0[..6], &[2.0, 0.0, 2.0, 0.0, 2.0, 0.0]);
        assert!(!w.set_fraud(2, true), "never pushed");
        w.advance_to(layout, t0.plus_seconds(40 * DAY));
        assert!(!w.set_fraud(1, true), "left every window: nothing to fix");
    }

    #[test]
    fn a_resumed_state_is_the_state_it_was_saved_from() {
        let schema = FeatureSchema::handbook();
        for layout in schema.entities().iter().map(|e| &e.layout) {
            let mut w = EntityWindows::new(layout);
            let t0 = Timestamp(1_000 * DAY);
            for i in 0..100 {
                w.push(t0.plus_seconds(i * DAY / 3), i as f64 * 1.25, i % 7 == 0);
            }
            let now = t0.plus_seconds(40 * DAY);
            w.advance_to(layout, now);
            w.set_fraud(w.first_index() + 3, true);
            let mut resumed = EntityWindows::resume(layout, w.first_index());
            for (t, amount, fraud) in w.events() {
                resumed.resume_push(t, amount, fraud);
            }
            resumed.advance_to(layout, now);
            assert_eq!(resumed.aggregates(layout), w.aggregates(layout));
            assert_eq!(resumed.push(now, 1.0, false), w.push(now, 1.0, false));
            let later = now.plus_seconds(9 * DAY);
            resumed.advance_to(layout, later);
            w.advance_to(layout, later);
            assert_eq!(resumed.aggregates(layout), w.aggregates(layout));
        }
    }

    proptest::proptest! {
        /// A label that arrives before its transaction enters the delayed windows gives the
        /// aggregates of a transaction pushed with its label, at every later time.
        #[test]
        fn a_label_set_before_the_delayed_windows_equals_pushing_with_it(
            events in proptest::collection::vec((0i64..20 * DAY, 0.0f64..10_000.0, proptest::bool::ANY, 0i64..7 * DAY), 1..150),
            probes in proptest::collection::vec(0i64..60 * DAY, 1..20),
        ) {
            let schema = FeatureSchema::handbook();
            let layout = &schema.entities()[1].layout; // delayed by 7 days
            let mut events = events;
            events.sort_by_key(|e| e.0);
            let (mut labelled, mut late) = (EntityWindows::new(layout), EntityWindows::new(layout));
            // Pushes and label arrivals in time order; labels strictly under the 7-day delay.
            let mut timeline: Vec<(i64, usize, bool)> = Vec::new();
            for (i, &(t, _, fraud, delay)) in events.iter().enumerate() {
                timeline.push((t, i, false));
                if fraud {
                    timeline.push((t + delay, i, true));
                }
            }
            timeline.sort_by_key(|&(t, i, is_label)| (t, is_label, i));
            let mut probes = probes;
            probes.sort_unstable();
            let mut probes = probes.into_iter().peekable();
            let mut index = alloc::vec![0u64; events.len()];
            let bits = |a: Aggregates| a.0.map(f64::to_bits);
            for (t, i, is_label) in timeline {
                while let Some(&p) = probes.peek().filter(|&&p| p <= t) {
                    labelled.advance_to(layout, Timestamp(p));
                    late.advance_to(layout, Timestamp(p));
                    proptest::prop_assert_eq!(bits(labelled.aggregates(layout)), bits(late.aggregates(layout)));
                    probes.next();
                }
                let (et, amount, fraud, _) = events[i];
                let amount = (amount * 100.0).round() / 100.0;
                if is_label {
                    late.advance_to(layout, Timestamp(t));
                    proptest::prop_assert!(late.set_fraud(index[i], true));
                } else {
                    labelled.push(Timestamp(et), amount, fraud);
                    index[i] = late.push(Timestamp(et), amount, false);
                }
            }
            for p in probes {
                labelled.advance_to(layout, Timestamp(p));
                late.advance_to(layout, Timestamp(p));
                proptest::prop_assert_eq!(bits(labelled.aggregates(layout)), bits(late.aggregates(layout)));
            }
        }
    }

    proptest::proptest! {
        /// Whatever the steps (pushes, advances to any later time, several at one time), the
        /// totals are those counted afresh over every event pushed.
        #[test]
        fn totals_are_those_counted_afresh(
            steps in proptest::collection::vec((0i64..3 * DAY, 0.0f64..1_000.0, proptest::bool::ANY, 0u8..3), 1..300),
        ) {
            let schema = FeatureSchema::handbook();
            for layout in schema.entities().iter().map(|e| &e.layout) {
                let mut w = EntityWindows::new(layout);
                let mut pushed: Vec<(i64, FixedAmount, bool)> = Vec::new();
                let mut now = 0i64;
                for &(gap, amount, fraud, action) in &steps {
                    // Gaps of up to three days over up to 300 steps: events enter and leave
                    // the 1-, 7- and 30-day windows, delayed or not.
                    now += gap / 8 * i64::from(action);
                    if action == 2 {
                        now += gap * 5;
                    }
                    if action == 0 {
                        let amount = FixedAmount::from_f64((amount * 100.0).round() / 100.0);
                        w.resume_push(Timestamp(now), amount, fraud);
                        pushed.push((now, amount, fraud));
                        continue;
                    }
                    w.advance_to(layout, Timestamp(now));
                    for (state, window) in w.windows.iter().zip(&layout.windows) {
                        let (end, start) = (window.end(Timestamp(now)), window.start(Timestamp(now)));
                        let mut expected = WindowTotals::default();
                        for &(_, a, f) in pushed.iter().filter(|e| start < e.0 && e.0 <= end) {
                            expected.add(a, f);
                        }
                        proptest::prop_assert_eq!(state.totals, expected);
                    }
                }
            }
        }
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
