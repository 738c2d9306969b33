//! The built-in transaction simulator: the generative process of the handbook's chapter "Transaction
//! data simulator" (customer and terminal profiles on a 100 x 100 grid, daily Poisson spending, three
//! fraud scenarios), reproduced in distribution, deterministic for a seed whatever the thread count.

use crate::transactions::scenario;
use crate::{EntityIds, Progress, Transactions};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Poisson, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;
use std::ops::Range;

/// Side of the square grid on which customers and terminals live.
const GRID: f64 = 100.0;
/// Seconds in a day, unsigned.
const DAY: u64 = SECONDS_PER_DAY as u64;
/// Transaction times are drawn around noon with this standard deviation, in seconds.
const TIME_STD: f64 = 20_000.0;
/// Scenario 1: an amount above this is fraud.
const HIGH_AMOUNT: f64 = 220.0;
/// Scenario 2: terminals compromised each day, and for how many days.
const TERMINALS_PER_DAY: usize = 2;
const TERMINAL_DAYS: u64 = 28;
/// Scenario 3: customers compromised each day, for how many days, and the fraudster's amount factor.
const CUSTOMERS_PER_DAY: usize = 3;
const CUSTOMER_DAYS: u64 = 14;
const FRAUD_AMOUNT_FACTOR: f64 = 5.0;
/// Customers per parallel work item (fixed, so that results never depend on the thread count).
const CHUNK: usize = 128;
/// Up to this many candidate terminals around a customer, the terminals in reach are listed; above
/// it (a dense grid, say a million terminals) they are drawn by rejection instead.
const LIST_AT_MOST: usize = 1024;

/// Parameters of a simulation.
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    /// Seed of every random draw: the same seed gives the same transactions.
    pub seed: u64,
    /// Number of customer profiles.
    pub customers: usize,
    /// Number of terminals on the 100 x 100 grid.
    pub terminals: usize,
    /// Number of simulated days.
    pub days: u32,
    /// Midnight of the first day (TX_TIME_SECONDS counts from here).
    pub start: Timestamp,
    /// A customer uses the terminals within this distance on the grid.
    pub radius: f64,
    /// A change of the generative process for some days (drift to monitor); none by default.
    pub shift: Option<Shift>,
}

/// A simulator parameter that a [`Shift`] changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShiftedParameter {
    /// Every genuine transaction's amount (before fraud scenarios apply to it).
    Amount,
}

/// A parameter multiplied by a factor on a range of days, e.g. amounts doubled on day 40:
/// `amount=2x@day40..41` (see [`Shift::from_str`](std::str::FromStr)).
#[derive(Clone, Debug, PartialEq)]
pub struct Shift {
    /// What changes.
    pub parameter: ShiftedParameter,
    /// By what factor (finite and positive).
    pub factor: f64,
    /// On which days, counted from 0 (the first simulated day), end exclusive.
    pub days: Range<u32>,
}

/// Why a shift's text could not be read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShiftError {
    /// The text is not `PARAMETER=FACTORx@dayFIRST..END`.
    #[error("{0:?}: expected PARAMETER=FACTORx@dayFIRST..END, e.g. amount=2x@day40..41")]
    Shape(String),
    /// An unknown parameter.
    #[error("{0:?}: no such parameter (known: amount)")]
    Parameter(String),
    /// The factor is not a finite positive number.
    #[error("factor {0:?}: must be a finite number > 0, e.g. 2x or 0.5x")]
    Factor(String),
    /// The days are not `dayN` or `dayN..M` with `N < M`.
    #[error("days {0:?}: expected dayN (one day) or dayN..M (days N to M-1, N < M), counted from day0")]
    Days(String),
}

impl std::str::FromStr for Shift {
    type Err = ShiftError;

    /// Reads `PARAMETER=FACTOR[x]@dayN[..M]`: `amount=2x@day40..41` doubles amounts on day 40
    /// (days count from 0, `M` exclusive; `day40` alone is the same one day).
    fn from_str(text: &str) -> Result<Shift, ShiftError> {
        let shape = || ShiftError::Shape(text.to_string());
        let (parameter, rest) = text.split_once('=').ok_or_else(shape)?;
        let (factor, days) = rest.split_once('@').ok_or_else(shape)?;
        let parameter = match parameter.trim() {
            "amount" => ShiftedParameter::Amount,
            other => return Err(ShiftError::Parameter(other.to_string())),
        };
        let f = factor.trim();
        let factor = f
            .strip_suffix('x')
            .unwrap_or(f)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| ShiftError::Factor(f.to_string()))?;
        let bad_days = || ShiftError::Days(days.to_string());
        let range = days.trim().strip_prefix("day").ok_or_else(bad_days)?;
        let number = |t: &str| t.trim().parse::<u32>().map_err(|_| bad_days());
        let days = match range.split_once("..") {
            Some((a, b)) => number(a)?..number(b.strip_prefix("day").unwrap_or(b))?,
            None => {
                let a = number(range)?;
                a..a.checked_add(1).ok_or_else(bad_days)?
            }
        };
        if days.is_empty() {
            return Err(bad_days());
        }
        Ok(Shift { parameter, factor, days })
    }
}

impl Default for SimulationConfig {
    fn default() -> SimulationConfig {
        SimulationConfig {
            seed: 0,
            customers: 5_000,
            terminals: 10_000,
            days: 183,
            start: Timestamp(1_522_540_800), // 2018-04-01 00:00:00, as in the handbook
            radius: 5.0,
            shift: None,
        }
    }
}

/// Why a [`SimulationConfig`] cannot be simulated.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimulationError {
    /// `customers` is 0.
    #[error("customers: must be at least 1, got 0")]
    NoCustomers,
    /// `customers` does not fit the `u32` entity index.
    #[error("customers: {0} is more than the {max} a u32 index holds", max = u32::MAX)]
    TooManyCustomers(usize),
    /// `terminals` is 0.
    #[error("terminals: must be at least 1, got 0")]
    NoTerminals,
    /// `terminals` does not fit the `u32` entity index.
    #[error("terminals: {0} is more than the {max} a u32 index holds", max = u32::MAX)]
    TooManyTerminals(usize),
    /// `days` is 0.
    #[error("days: must be at least 1, got 0")]
    NoDays,
    /// `radius` is zero, negative, infinite or NaN.
    #[error("radius: {0} is not a positive finite distance")]
    BadRadius(f64),
    /// The shift's factor is not finite and positive, or its days are empty.
    #[error("shift: factor {factor} on days {days:?} (need a finite factor > 0 and at least one day)")]
    BadShift {
        /// The factor.
        factor: f64,
        /// The days.
        days: Range<u32>,
    },
    /// `start` plus `days` days does not fit a [`Timestamp`].
    #[error("start: {start} plus {days} days is beyond the range of a timestamp")]
    StartOutOfRange {
        /// The configured start, in seconds since the epoch.
        start: i64,
        /// The configured number of days.
        days: u32,
    },
}

impl SimulationConfig {
    /// Checks every parameter, naming the first one that cannot be simulated.
    pub fn validate(&self) -> Result<(), SimulationError> {
        if self.customers == 0 {
            return Err(SimulationError::NoCustomers);
        }
        if u32::try_from(self.customers).is_err() {
            return Err(SimulationError::TooManyCustomers(self.customers));
        }
        if self.terminals == 0 {
            return Err(SimulationError::NoTerminals);
        }
        if u32::try_from(self.terminals).is_err() {
            return Err(SimulationError::TooManyTerminals(self.terminals));
        }
        if self.days == 0 {
            return Err(SimulationError::NoDays);
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(SimulationError::BadRadius(self.radius));
        }
        if let Some(shift) = &self.shift
            && !(shift.factor.is_finite() && shift.factor > 0.0 && !shift.days.is_empty())
        {
            return Err(SimulationError::BadShift { factor: shift.factor, days: shift.days.clone() });
        }
        if self.start.0.checked_add(i64::from(self.days) * SECONDS_PER_DAY).is_none() {
            return Err(SimulationError::StartOutOfRange { start: self.start.0, days: self.days });
        }
        Ok(())
    }
}

/// Simulates a transaction history, sorted by time, with labels and fraud scenarios.
///
/// Customer and terminal ids are the decimal profile numbers `"0".."N-1"`, interned in ascending
/// order; customers (terminals) that never transact do not appear. Ties in time are ordered by
/// customer, then by generation order; TRANSACTION_ID is the row number.
pub fn simulate(config: &SimulationConfig, progress: &dyn Progress) -> Result<Transactions, SimulationError> {
    config.validate()?;
    progress.start("simulate", config.customers as u64);

    let grid = TerminalGrid::new(&terminal_positions(config), config.radius);
    let mut raw = generate(config, &grid, progress);
    label_frauds(config, &mut raw);
    let order = time_order(&raw.rows);
    let tx = assemble(config, &raw, &order)?;

    progress.finish();
    Ok(tx)
}

/// The independent random streams of a simulation: one per purpose and index.
#[derive(Clone, Copy)]
enum Stream {
    Terminals = 1,
    Customer = 2,
    CompromisedTerminals = 3,
    CompromisedCustomers = 4,
}

/// The random stream `index` of kind `stream` for `seed`, independent of every other.
fn rng(seed: u64, stream: Stream, index: u64) -> Xoshiro256PlusPlus {
    let h = splitmix64(seed ^ splitmix64(stream as u64));
    Xoshiro256PlusPlus::seed_from_u64(splitmix64(h ^ index))
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Terminal locations, uniform on the grid.
fn terminal_positions(config: &SimulationConfig) -> Vec<(f64, f64)> {
    let mut rng = rng(config.seed, Stream::Terminals, 0);
    (0..config.terminals).map(|_| (rng.random_range(0.0..GRID), rng.random_range(0.0..GRID))).collect()
}

/// Terminals bucketed into square cells at least `radius` wide, so that finding the terminals near a
/// customer reads a few cells instead of every terminal.
struct TerminalGrid {
    radius: f64,
    cell: f64,
    cols: usize,
    /// Cell `c` holds entries `start[c]..start[c + 1]`.
    start: Vec<usize>,
    /// Terminal index, x and y of each entry, cell by cell.
    id: Vec<u32>,
    x: Vec<f64>,
    y: Vec<f64>,
}

impl TerminalGrid {
    fn new(positions: &[(f64, f64)], radius: f64) -> TerminalGrid {
        // Cells no narrower than the radius (so a query reads at most 3 x 3 cells), and no more
        // cells than about four per terminal (so a tiny radius does not make a huge empty grid).
        let by_radius = (GRID / radius).floor().max(1.0);
        let by_count = (2.0 * (positions.len() as f64).sqrt()).ceil().max(1.0);
        let mut cols = by_radius.min(by_count).min(4096.0) as usize;
        while cols > 1 && GRID / (cols as f64) < radius {
            cols -= 1; // rounding made the cells a hair narrower than the radius
        }
        let cell = GRID / cols as f64;
        let cell_of = |(x, y): (f64, f64)| Self::clamp(x / cell, cols) * cols + Self::clamp(y / cell, cols);

        let mut start = vec![0usize; cols * cols + 1];
        for &p in positions {
            start[cell_of(p) + 1] += 1;
        }
        for c in 1..start.len() {
            start[c] += start[c - 1];
        }
        let mut next = start.clone();
        let (mut id, mut x, mut y) =
            (vec![0; positions.len()], vec![0.0; positions.len()], vec![0.0; positions.len()]);
        for (t, &p) in positions.iter().enumerate() {
            let c = cell_of(p);
            let e = next[c];
            next[c] += 1;
            // Terminal counts were validated to fit in u32.
            id[e] = t as u32;
            (x[e], y[e]) = p;
        }
        TerminalGrid { radius, cell, cols, start, id, x, y }
    }

    /// The cell coordinate of a scaled position, inside the grid.
    fn clamp(v: f64, cols: usize) -> usize {
        (v.max(0.0) as usize).min(cols - 1)
    }

    /// The grid entries of the cells that can hold terminals within the radius of `(x, y)`.
    fn candidates(&self, (x, y): (f64, f64)) -> Candidates {
        let r = self.radius;
        let (cx0, cx1) =
            (Self::clamp((x - r) / self.cell, self.cols), Self::clamp((x + r) / self.cell, self.cols));
        let (cy0, cy1) =
            (Self::clamp((y - r) / self.cell, self.cols), Self::clamp((y + r) / self.cell, self.cols));
        let mut found = Candidates { runs: [(0, 0); 4], total: 0 };
        // Cells are at least the radius wide, so the span is 3 rows (4 would take a rounding error).
        for (run, cx) in found.runs.iter_mut().zip(cx0..=cx1) {
            let row = cx * self.cols;
            *run = (self.start[row + cy0], self.start[row + cy1 + 1]);
            found.total += run.1 - run.0;
        }
        found
    }

    /// True when grid entry `e` is strictly closer than the radius to `(x, y)`.
    fn reaches(&self, e: usize, (x, y): (f64, f64)) -> bool {
        let (dx, dy) = (self.x[e] - x, self.y[e] - y);
        (dx * dx + dy * dy).sqrt() < self.radius
    }

    /// Writes into `out` the terminals strictly closer than the radius to `position`.
    fn within_radius(&self, position: (f64, f64), out: &mut Vec<u32>) {
        out.clear();
        out.extend(
            self.candidates(position).entries().filter(|&e| self.reaches(e, position)).map(|e| self.id[e]),
        );
    }
}

/// Runs of grid entries (one per row of cells) that hold every terminal in reach of a position.
#[derive(Clone, Copy)]
struct Candidates {
    runs: [(usize, usize); 4],
    total: usize,
}

impl Candidates {
    fn entries(&self) -> impl Iterator<Item = usize> {
        self.runs.into_iter().flat_map(|(from, to)| from..to)
    }
}

/// The terminals a customer can use, and how to draw one uniformly.
enum Reach<'a> {
    /// Few candidates: the terminals in reach, listed.
    Listed(&'a [u32]),
    /// Many candidates: draw one uniformly, keep it if in reach (uniform over those in reach).
    Sampled { grid: &'a TerminalGrid, candidates: Candidates, position: (f64, f64) },
}

impl<'a> Reach<'a> {
    /// The terminals in reach of `position`, `None` when there is none; `scratch` holds the list.
    fn new(grid: &'a TerminalGrid, position: (f64, f64), scratch: &'a mut Vec<u32>) -> Option<Reach<'a>> {
        let candidates = grid.candidates(position);
        if candidates.total <= LIST_AT_MOST {
            grid.within_radius(position, scratch);
            (!scratch.is_empty()).then_some(Reach::Listed(scratch))
        } else {
            let any = candidates.entries().any(|e| grid.reaches(e, position));
            any.then_some(Reach::Sampled { grid, candidates, position })
        }
    }

    /// A terminal drawn uniformly among those in reach.
    fn pick(&self, rng: &mut Xoshiro256PlusPlus) -> u32 {
        match self {
            Reach::Listed(ids) => ids[rng.random_range(0..ids.len())],
            // Away from the grid's edges, at least pi/36 of the candidates are in reach (pi/9 when
            // the cells are exactly the radius wide, as for the default 5).
            Reach::Sampled { grid, candidates, position } => loop {
                if let Some(e) = candidates.entries().nth(rng.random_range(0..candidates.total))
                    && grid.reaches(e, *position)
                {
                    return grid.id[e];
                }
            },
        }
    }
}

/// One generated transaction, before sorting.
#[derive(Clone, Copy)]
struct Row {
    /// Seconds since the start (TX_TIME_SECONDS).
    seconds: u64,
    amount: f64,
    customer: u32,
    terminal: u32,
}

/// Generated transactions before sorting, customer by customer (ascending), each customer's in
/// generation order; rows rather than columns, so that putting them in time order reads one cache
/// line per row.
struct Raw {
    rows: Vec<Row>,
    /// Filled by [`label_frauds`].
    scenario: Vec<u8>,
}

impl Raw {
    /// The rows of customer `c` whose day is in `days`.
    fn rows_in_window(&self, c: u32, days: Range<u64>) -> Range<usize> {
        let customer =
            self.rows.partition_point(|r| r.customer < c)..self.rows.partition_point(|r| r.customer <= c);
        // A customer's rows are in day order (not in time order within a day).
        let rows = &self.rows[customer.clone()];
        let from = rows.partition_point(|r| r.seconds / DAY < days.start);
        let to = rows.partition_point(|r| r.seconds / DAY < days.end);
        customer.start + from..customer.start + to
    }
}

/// Draws every customer's profile and transactions, customers in parallel, one stream each.
fn generate(config: &SimulationConfig, grid: &TerminalGrid, progress: &dyn Progress) -> Raw {
    let chunks = config.customers.div_ceil(CHUNK);
    let parts: Vec<Vec<Row>> = (0..chunks)
        .into_par_iter()
        .map_init(Vec::new, |nearby, chunk| {
            let customers = chunk * CHUNK..((chunk + 1) * CHUNK).min(config.customers);
            let done = customers.len() as u64;
            let mut part = Vec::new();
            for c in customers {
                customer_transactions(config, grid, c, nearby, &mut part);
            }
            progress.advance(done);
            part
        })
        .collect();
    Raw { rows: parts.concat(), scenario: Vec::new() }
}

/// A customer's spending habits, drawn first from the customer's own stream.
struct Profile {
    position: (f64, f64),
    mean_amount: f64,
    std_amount: f64,
    mean_tx_per_day: f64,
}

impl Profile {
    fn draw(rng: &mut Xoshiro256PlusPlus) -> Profile {
        let position = (rng.random_range(0.0..GRID), rng.random_range(0.0..GRID));
        let mean_amount = rng.random_range(5.0..100.0);
        let mean_tx_per_day = rng.random_range(0.0..4.0);
        Profile { position, mean_amount, std_amount: mean_amount / 2.0, mean_tx_per_day }
    }
}

/// Customer `c`'s profile and transactions, appended to `out`; `nearby` is scratch space.
fn customer_transactions(
    config: &SimulationConfig,
    grid: &TerminalGrid,
    c: usize,
    nearby: &mut Vec<u32>,
    out: &mut Vec<Row>,
) {
    let mut rng = rng(config.seed, Stream::Customer, c as u64);
    let profile = Profile::draw(&mut rng);
    // No terminal in reach, or a rate of exactly 0 (Poisson refuses it), means no transaction.
    let Some(reach) = Reach::new(grid, profile.position, nearby) else {
        return;
    };
    let Ok(per_day) = Poisson::new(profile.mean_tx_per_day) else {
        return;
    };
    // Customer counts were validated to fit in u32.
    let customer = c as u32;
    for day in 0..u64::from(config.days) {
        let count = per_day.sample(&mut rng) as u64;
        for _ in 0..count {
            // Around noon; times outside the day are dropped, not redrawn, as in the handbook.
            let z: f64 = StandardNormal.sample(&mut rng);
            let time = (DAY as f64 / 2.0 + TIME_STD * z) as i64;
            if time <= 0 || time >= DAY as i64 {
                continue;
            }
            let z: f64 = StandardNormal.sample(&mut rng);
            let mut amount = profile.mean_amount + profile.std_amount * z;
            if amount < 0.0 {
                amount = rng.random_range(0.0..2.0 * profile.mean_amount);
            }
            if let Some(shift) = &config.shift
                && shift.parameter == ShiftedParameter::Amount
                && shift.days.contains(&(day as u32))
            {
                amount *= shift.factor;
            }
            let amount = (amount * 100.0).round_ties_even() / 100.0;
            let terminal = reach.pick(&mut rng);
            out.push(Row { seconds: day * DAY + time as u64, amount, customer, terminal });
        }
    }
}

/// `k` distinct values drawn uniformly from `0..n` (all of them when `n <= k`), in draw order.
fn distinct(rng: &mut Xoshiro256PlusPlus, n: usize, k: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(k.min(n));
    while out.len() < k.min(n) {
        let v = rng.random_range(0..n);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The terminals compromised on `day` (scenario 2).
fn compromised_terminals(config: &SimulationConfig, day: u64) -> Vec<usize> {
    distinct(&mut rng(config.seed, Stream::CompromisedTerminals, day), config.terminals, TERMINALS_PER_DAY)
}

/// The customers compromised on `day` (scenario 3), and the stream that then picks their frauds.
fn compromised_customers(config: &SimulationConfig, day: u64) -> (Vec<usize>, Xoshiro256PlusPlus) {
    let mut rng = rng(config.seed, Stream::CompromisedCustomers, day);
    (distinct(&mut rng, config.customers, CUSTOMERS_PER_DAY), rng)
}

/// Applies the handbook's three fraud scenarios in its order (3 overrides 2 overrides 1).
fn label_frauds(config: &SimulationConfig, raw: &mut Raw) {
    // As in the handbook, compromise draws run for days 0..max day present (exclusive).
    let last_day = raw.rows.par_iter().map(|r| r.seconds / DAY).max().unwrap_or(0);

    // Scenario 2's compromised terminals: per terminal, the days its 28-day windows start.
    let mut slot = vec![u32::MAX; config.terminals];
    let mut windows: Vec<Vec<u64>> = Vec::new();
    for day in 0..last_day {
        for t in compromised_terminals(config, day) {
            if slot[t] == u32::MAX {
                slot[t] = windows.len() as u32;
                windows.push(Vec::new());
            }
            windows[slot[t] as usize].push(day);
        }
    }

    // Scenarios 1 and 2 depend on the row alone.
    raw.scenario = raw
        .rows
        .par_iter()
        .map(|r| {
            let on_compromised = slot[r.terminal as usize] != u32::MAX && {
                let starts = &windows[slot[r.terminal as usize] as usize];
                let day = r.seconds / DAY;
                let p = starts.partition_point(|&s| s <= day);
                p > 0 && day < starts[p - 1] + TERMINAL_DAYS
            };
            if on_compromised {
                scenario::COMPROMISED_TERMINAL
            } else if r.amount > HIGH_AMOUNT {
                scenario::HIGH_AMOUNT
            } else {
                scenario::GENUINE
            }
        })
        .collect();

    // Scenario 3: each day, a third of the 3 drawn customers' transactions of the next 14 days,
    // drawn together, become fraud with 5 times the amount (again if already drawn, as in the handbook).
    let mut rows = Vec::new();
    for day in 0..last_day {
        let (customers, mut rng) = compromised_customers(config, day);
        rows.clear();
        for c in customers {
            rows.extend(raw.rows_in_window(c as u32, day..day + CUSTOMER_DAYS));
        }
        for i in 0..rows.len() / 3 {
            let j = rng.random_range(i..rows.len());
            rows.swap(i, j);
            let row = rows[i];
            raw.rows[row].amount *= FRAUD_AMOUNT_FACTOR;
            raw.scenario[row] = scenario::COMPROMISED_CUSTOMER;
        }
    }
}

/// The indices of `rows` in time order, ties by index (that is, by customer, then generation order).
fn time_order(rows: &[Row]) -> Vec<u64> {
    let Some(last) = rows.len().checked_sub(1) else {
        return Vec::new();
    };
    let max = rows.par_iter().map(|r| r.seconds).max().unwrap_or(0);
    // One u64 key per row, time above index, when both fit (for 183 days: up to 2^40 rows); the
    // sorted keys then become the indices in place.
    let index_bits = usize::BITS - last.leading_zeros();
    if index_bits < u64::BITS && max.leading_zeros() >= index_bits {
        let mask = (1u64 << index_bits) - 1;
        let mut keys: Vec<u64> =
            rows.par_iter().enumerate().map(|(i, r)| r.seconds << index_bits | i as u64).collect();
        keys.par_sort_unstable();
        keys.par_iter_mut().for_each(|k| *k &= mask);
        keys
    } else {
        let mut keys: Vec<(u64, u64)> =
            rows.par_iter().enumerate().map(|(i, r)| (r.seconds, i as u64)).collect();
        keys.par_sort_unstable();
        keys.par_iter().map(|&(_, i)| i).collect()
    }
}

/// Builds the [`Transactions`] in time order, with interned ids.
fn assemble(config: &SimulationConfig, raw: &Raw, order: &[u64]) -> Result<Transactions, SimulationError> {
    let (customers, customer_index) = intern_used(config.customers, raw.rows.iter().map(|r| r.customer))
        .ok_or(SimulationError::TooManyCustomers(config.customers))?;
    let (terminals, terminal_index) = intern_used(config.terminals, raw.rows.iter().map(|r| r.terminal))
        .ok_or(SimulationError::TooManyTerminals(config.terminals))?;
    // One random read per row here; the columns below then stream.
    let rows: Vec<Row> = order.par_iter().map(|&i| raw.rows[i as usize]).collect();
    let scenario: Vec<u8> = order.par_iter().map(|&i| raw.scenario[i as usize]).collect();
    let origin = config.start;
    Ok(Transactions {
        transaction_id: (0..rows.len() as u64).collect(),
        // Validation bounds every time by start + days.
        time: rows.par_iter().map(|r| Timestamp(origin.0 + r.seconds as i64)).collect(),
        customer: rows.par_iter().map(|r| customer_index[r.customer as usize]).collect(),
        terminal: rows.par_iter().map(|r| terminal_index[r.terminal as usize]).collect(),
        amount: rows.par_iter().map(|r| r.amount).collect(),
        fraud: scenario.par_iter().map(|&s| u8::from(s != scenario::GENUINE)).collect(),
        scenario,
        customers,
        terminals,
        origin,
    })
}

/// Interns, in ascending order, the profile numbers among `0..count` that occur in `used`, and maps
/// each profile number to its dense index. `None` when the table is full.
fn intern_used(count: usize, used: impl Iterator<Item = u32>) -> Option<(EntityIds, Vec<u32>)> {
    let mut seen = vec![false; count];
    used.for_each(|u| seen[u as usize] = true);
    let mut ids = EntityIds::new();
    let mut index = vec![u32::MAX; count];
    for (p, _) in seen.iter().enumerate().filter(|(_, s)| **s) {
        index[p] = ids.intern(&p.to_string())?;
    }
    Some((ids, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use std::sync::Mutex;

    /// Small enough for a quick test, dense enough (radius 10) that every scenario occurs.
    fn small(seed: u64) -> SimulationConfig {
        SimulationConfig {
            seed,
            customers: 400,
            terminals: 800,
            days: 60,
            radius: 10.0,
            ..Default::default()
        }
    }

    fn run(config: &SimulationConfig) -> Transactions {
        match simulate(config, &NoProgress) {
            Ok(tx) => tx,
            Err(e) => panic!("{config:?}: {e}"),
        }
    }

    fn assert_same(a: &Transactions, b: &Transactions) {
        assert_eq!(a.transaction_id, b.transaction_id);
        assert_eq!(a.time, b.time);
        assert_eq!(a.customer, b.customer);
        assert_eq!(a.terminal, b.terminal);
        assert_eq!(a.amount, b.amount);
        assert_eq!(a.fraud, b.fraud);
        assert_eq!(a.scenario, b.scenario);
        assert_eq!(a.origin, b.origin);
        let ids = |e: &EntityIds| (0..e.len() as u32).map(|i| e.id(i).to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(&a.customers), ids(&b.customers));
        assert_eq!(ids(&a.terminals), ids(&b.terminals));
    }

    fn profile_number(ids: &EntityIds, i: u32) -> usize {
        ids.id(i).parse().unwrap_or_else(|e| panic!("id {:?} is not a profile number: {e}", ids.id(i)))
    }

    #[test]
    fn an_unshifted_simulation_is_unchanged_and_a_shift_changes_only_its_days() {
        let base = small(21);
        let plain = run(&base);
        // A shift on days past the end changes nothing: the shifted code path draws the same numbers.
        let beyond = SimulationConfig { shift: "amount=3x@day500..501".parse().ok(), ..base.clone() };
        assert_same(&plain, &run(&beyond));
        let shifted = run(&SimulationConfig { shift: "amount=2x@day40..42".parse().ok(), ..base });
        assert_eq!(plain.time, shifted.time);
        assert_eq!(plain.customer, shifted.customer);
        let (mut inside, mut doubled) = (0, 0);
        for i in 0..plain.len() {
            let day = plain.time_days(i);
            let (a, b) = (plain.amount[i], shifted.amount[i]);
            if !(40..42).contains(&day) {
                assert_eq!(a, b, "row {i} on day {day}");
            } else if plain.scenario[i] != scenario::COMPROMISED_CUSTOMER {
                inside += 1;
                // Twice the unrounded amount, rounded to cents: within a cent of twice the rounded one.
                doubled += usize::from((b - 2.0 * a).abs() <= 0.010_000_1);
            }
        }
        assert!(inside > 500 && doubled == inside, "{doubled} of {inside} amounts doubled");
    }

    #[test]
    fn shifts_parse_and_name_what_is_wrong() {
        let ok = |t: &str| t.parse::<Shift>().unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(
            ok("amount=2x@day40..41"),
            Shift { parameter: ShiftedParameter::Amount, factor: 2.0, days: 40..41 }
        );
        assert_eq!(ok("amount=0.5@day3").days, 3..4);
        assert_eq!(ok("amount=1.5x@day3..day9").days, 3..9);
        let err = |t: &str| t.parse::<Shift>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("amount2x").contains("expected PARAMETER="), "{}", err("amount2x"));
        assert!(err("rate=2x@day1").contains("no such parameter"));
        assert!(err("amount=-2x@day1").contains("factor \"-2x\""));
        assert!(err("amount=2x@day9..3").contains("days \"day9..3\""));
        assert!(err("amount=2x@40").contains("days"));
        let bad = SimulationConfig {
            shift: Some(Shift { parameter: ShiftedParameter::Amount, factor: f64::NAN, days: 1..2 }),
            ..small(0)
        };
        assert!(matches!(bad.validate(), Err(SimulationError::BadShift { .. })));
    }

    #[test]
    fn same_seed_gives_same_transactions() {
        assert_same(&run(&small(7)), &run(&small(7)));
    }

    #[test]
    fn same_seed_gives_same_transactions_on_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
        let single = pool.install(|| run(&small(7)));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a three-thread pool");
        let three = pool.install(|| run(&small(7)));
        assert_same(&single, &three);
    }

    #[test]
    fn different_seeds_give_different_transactions() {
        let (a, b) = (run(&small(1)), run(&small(2)));
        assert!(a.len() != b.len() || a.amount != b.amount || a.time != b.time);
    }

    #[test]
    fn rows_are_in_time_order_with_ids_counting_rows_and_ties_by_customer() {
        let tx = run(&small(3));
        assert!(tx.len() > 10_000, "only {} transactions", tx.len());
        assert!(tx.transaction_id.iter().enumerate().all(|(i, &id)| id == i as u64));
        for i in 1..tx.len() {
            assert!(tx.time[i - 1] <= tx.time[i], "row {i} is earlier than row {}", i - 1);
            if tx.time[i - 1] == tx.time[i] {
                assert!(tx.customer[i - 1] <= tx.customer[i], "tie at row {i} not ordered by customer");
            }
        }
    }

    #[test]
    fn times_fall_strictly_inside_the_simulated_days() {
        let config = small(4);
        let tx = run(&config);
        assert_eq!(tx.origin, config.start);
        for i in 0..tx.len() {
            let second_of_day = tx.time_seconds(i) - tx.time_days(i) * SECONDS_PER_DAY;
            assert!(second_of_day > 0, "row {i} at midnight");
            assert!(
                (0..i64::from(config.days)).contains(&tx.time_days(i)),
                "row {i} on day {}",
                tx.time_days(i)
            );
        }
    }

    #[test]
    fn ids_are_ascending_profile_numbers_of_entities_that_transact() {
        let config = small(5);
        let tx = run(&config);
        for (ids, count, used) in
            [(&tx.customers, config.customers, &tx.customer), (&tx.terminals, config.terminals, &tx.terminal)]
        {
            let numbers: Vec<usize> = (0..ids.len() as u32).map(|i| profile_number(ids, i)).collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "ids not ascending");
            assert!(numbers.iter().all(|&n| n < count));
            let mut seen = vec![false; ids.len()];
            used.iter().for_each(|&u| seen[u as usize] = true);
            assert!(seen.iter().all(|&s| s), "an interned entity has no transaction");
        }
        // With 800 terminals in reach of few customers, some terminals are never used.
        assert!(tx.customers.len() <= config.customers);
    }

    fn assert_terminals_within_radius(config: &SimulationConfig, tx: &Transactions) {
        let terminals = terminal_positions(config);
        for i in 0..tx.len() {
            let c = profile_number(&tx.customers, tx.customer[i]);
            let (x, y) = Profile::draw(&mut rng(config.seed, Stream::Customer, c as u64)).position;
            let (tx_, ty) = terminals[profile_number(&tx.terminals, tx.terminal[i])];
            assert!(
                ((x - tx_).powi(2) + (y - ty).powi(2)).sqrt() < config.radius,
                "row {i} uses a far terminal"
            );
        }
    }

    #[test]
    fn every_transaction_uses_a_terminal_within_the_radius() {
        let config = SimulationConfig { radius: 3.0, ..small(6) };
        let tx = run(&config);
        assert_terminals_within_radius(&config, &tx);
    }

    #[test]
    fn grid_finds_exactly_the_terminals_a_full_scan_finds() {
        let config = SimulationConfig { terminals: 3_000, ..small(8) };
        let positions = terminal_positions(&config);
        let mut probe = rng(99, Stream::Customer, 0);
        for radius in [0.01, 0.7, 5.0, 100.0 / 7.0, 100.0 / 3.0, 100.0, 500.0] {
            let grid = TerminalGrid::new(&positions, radius);
            let mut found = Vec::new();
            for _ in 0..200 {
                let (x, y) = (probe.random_range(0.0..GRID), probe.random_range(0.0..GRID));
                grid.within_radius((x, y), &mut found);
                found.sort_unstable();
                let scan: Vec<u32> = (0..positions.len() as u32)
                    .filter(|&t| {
                        let (tx, ty) = positions[t as usize];
                        ((tx - x).powi(2) + (ty - y).powi(2)).sqrt() < radius
                    })
                    .collect();
                assert_eq!(found, scan, "radius {radius} at ({x}, {y})");
            }
        }
    }

    #[test]
    fn dense_grids_draw_terminals_uniformly_among_those_in_reach() {
        let config = SimulationConfig { terminals: 100_000, ..small(15) };
        let positions = terminal_positions(&config);
        let grid = TerminalGrid::new(&positions, 5.0);
        let (position, mut scratch) = ((50.0, 50.0), Vec::new());
        let mut listed = Vec::new();
        grid.within_radius(position, &mut listed);
        let reach = Reach::new(&grid, position, &mut scratch).expect("terminals in reach");
        assert!(matches!(reach, Reach::Sampled { .. }), "100 000 terminals should be sampled, not listed");
        let mut count = vec![0u32; config.terminals];
        let mut rng = rng(1, Stream::Customer, 1);
        let draws = 150 * listed.len();
        for _ in 0..draws {
            count[reach.pick(&mut rng) as usize] += 1;
        }
        // Every terminal in reach, and only those, about 150 times each (Poisson sd about 12).
        let drawn: Vec<u32> = (0..config.terminals as u32).filter(|&t| count[t as usize] > 0).collect();
        listed.sort_unstable();
        assert_eq!(drawn, listed);
        assert!(listed.iter().all(|&t| (80..=220).contains(&count[t as usize])), "not uniform");
    }

    #[test]
    fn dense_grids_use_terminals_within_the_radius() {
        let config = SimulationConfig { customers: 60, terminals: 200_000, days: 10, ..small(16) };
        let tx = run(&config);
        assert!(tx.len() > 500, "only {} transactions", tx.len());
        assert_terminals_within_radius(&config, &tx);
    }

    #[test]
    fn amounts_are_non_negative_cents_unless_multiplied_by_a_fraudster() {
        let tx = run(&small(9));
        for i in 0..tx.len() {
            assert!(tx.amount[i] >= 0.0, "row {i}: negative amount");
            if tx.scenario[i] != scenario::COMPROMISED_CUSTOMER {
                let cents = tx.amount[i] * 100.0;
                assert!((cents - cents.round()).abs() < 1e-6, "row {i}: {} is not whole cents", tx.amount[i]);
            }
        }
    }

    #[test]
    fn fraud_labels_follow_the_scenarios() {
        let config = small(10);
        let tx = run(&config);
        let mut by_scenario = [0usize; 4];
        for i in 0..tx.len() {
            let s = tx.scenario[i];
            by_scenario[usize::from(s)] += 1;
            assert_eq!(tx.fraud[i], u8::from(s != scenario::GENUINE), "row {i}");
            if s == scenario::HIGH_AMOUNT {
                assert!(tx.amount[i] > HIGH_AMOUNT, "row {i}: scenario 1 at {}", tx.amount[i]);
            }
            if tx.amount[i] > HIGH_AMOUNT && s != scenario::COMPROMISED_CUSTOMER {
                // Scenario 2 overrides scenario 1, scenario 3 may have multiplied it.
                assert!(matches!(s, scenario::HIGH_AMOUNT | scenario::COMPROMISED_TERMINAL), "row {i}: {s}");
            }
        }
        assert!(by_scenario[1..].iter().all(|&n| n > 0), "a scenario never occurs: {by_scenario:?}");
    }

    #[test]
    fn scenario_2_is_exactly_the_compromised_terminals_windows() {
        let config = small(11);
        let tx = run(&config);
        let last_day = (0..tx.len()).map(|i| tx.time_days(i)).max().unwrap_or(0) as u64;
        let mut windows = vec![Vec::new(); config.terminals];
        for day in 0..last_day {
            compromised_terminals(&config, day).into_iter().for_each(|t| windows[t].push(day));
        }
        for i in 0..tx.len() {
            let (day, t) = (tx.time_days(i) as u64, profile_number(&tx.terminals, tx.terminal[i]));
            let compromised = windows[t].iter().any(|&d| d <= day && day < d + TERMINAL_DAYS);
            match tx.scenario[i] {
                scenario::COMPROMISED_CUSTOMER => {}
                scenario::COMPROMISED_TERMINAL => {
                    assert!(compromised, "row {i}: scenario 2 on a safe terminal")
                }
                s => assert!(!compromised, "row {i}: scenario {s} on a compromised terminal"),
            }
        }
    }

    #[test]
    fn scenario_3_takes_a_third_of_the_compromised_customers_windows() {
        let config = small(12);
        let tx = run(&config);
        let last_day = (0..tx.len()).map(|i| tx.time_days(i)).max().unwrap_or(0) as u64;
        let mut windows = vec![Vec::new(); config.customers];
        let (mut drawn_at_least, mut drawn_in_all) = (0, 0);
        for day in 0..last_day {
            let customers = compromised_customers(&config, day).0;
            let in_window = |i: usize| {
                let d = tx.time_days(i) as u64;
                customers.contains(&profile_number(&tx.customers, tx.customer[i])) && day <= d && d < day + 14
            };
            // Windows overlap and a row may be drawn again: each day's draw bounds the rows marked
            // from below, all days' draws together bound them from above.
            let drawn = (0..tx.len()).filter(|&i| in_window(i)).count() / 3;
            (drawn_at_least, drawn_in_all) = (drawn_at_least.max(drawn), drawn_in_all + drawn);
            customers.into_iter().for_each(|c| windows[c].push(day));
        }
        let mut marked = 0;
        for i in 0..tx.len() {
            if tx.scenario[i] == scenario::COMPROMISED_CUSTOMER {
                marked += 1;
                let (day, c) = (tx.time_days(i) as u64, profile_number(&tx.customers, tx.customer[i]));
                assert!(
                    windows[c].iter().any(|&d| d <= day && day < d + CUSTOMER_DAYS),
                    "row {i}: scenario 3 outside a compromised window"
                );
            }
        }
        assert!(drawn_at_least > 0);
        assert!(
            (drawn_at_least..=drawn_in_all).contains(&marked),
            "{marked} rows marked, draws {drawn_at_least}..={drawn_in_all}"
        );
    }

    /// What a simulation reported: the phases started, the units advanced, the phases finished.
    #[derive(Debug, Default, PartialEq)]
    struct Report {
        phases: Vec<(String, u64)>,
        advanced: u64,
        finished: usize,
    }

    /// A [`Progress`] that keeps a [`Report`].
    #[derive(Default)]
    struct Recorded(Mutex<Report>);

    impl Recorded {
        fn update(&self, f: impl FnOnce(&mut Report)) {
            f(&mut self.0.lock().expect("progress lock"));
        }
    }

    impl Progress for Recorded {
        fn start(&self, phase: &str, total: u64) {
            self.update(|r| r.phases.push((phase.to_owned(), total)));
        }
        fn advance(&self, units: u64) {
            self.update(|r| r.advanced += units);
        }
        fn finish(&self) {
            self.update(|r| r.finished += 1);
        }
    }

    #[test]
    fn reports_progress_per_customer() {
        let config = small(13);
        let recorded = Recorded::default();
        simulate(&config, &recorded).expect("valid config");
        let customers = config.customers as u64;
        let expected =
            Report { phases: vec![("simulate".to_owned(), customers)], advanced: customers, finished: 1 };
        assert_eq!(recorded.0.into_inner().expect("progress lock"), expected);
    }

    #[test]
    fn customers_without_terminals_make_no_transactions() {
        let config = SimulationConfig { terminals: 1, radius: 0.5, ..small(14) };
        let tx = run(&config);
        assert!(tx.terminals.len() <= 1);
        assert!(tx.customers.len() < 10, "{} customers reach a single terminal", tx.customers.len());
    }

    #[test]
    fn refuses_configs_it_cannot_simulate() {
        let cases = [
            (SimulationConfig { customers: 0, ..small(0) }, SimulationError::NoCustomers, "customers"),
            (SimulationConfig { terminals: 0, ..small(0) }, SimulationError::NoTerminals, "terminals"),
            (SimulationConfig { days: 0, ..small(0) }, SimulationError::NoDays, "days"),
            (SimulationConfig { radius: 0.0, ..small(0) }, SimulationError::BadRadius(0.0), "radius"),
            (SimulationConfig { radius: -1.0, ..small(0) }, SimulationError::BadRadius(-1.0), "radius"),
            (
                SimulationConfig { radius: f64::INFINITY, ..small(0) },
                SimulationError::BadRadius(f64::INFINITY),
                "radius",
            ),
            (
                SimulationConfig { start: Timestamp(i64::MAX - 10), ..small(0) },
                SimulationError::StartOutOfRange { start: i64::MAX - 10, days: 60 },
                "start",
            ),
        ];
        for (config, error, parameter) in cases {
            assert_eq!(config.validate(), Err(error.clone()));
            assert_eq!(simulate(&config, &NoProgress).err(), Some(error.clone()));
            assert!(error.to_string().starts_with(&format!("{parameter}: ")), "{error}");
        }
        let nan = SimulationConfig { radius: f64::NAN, ..small(0) };
        assert!(matches!(nan.validate(), Err(SimulationError::BadRadius(r)) if r.is_nan()));
        assert_eq!(SimulationConfig::default().validate(), Ok(()));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn refuses_more_entities_than_u32_indices_hold() {
        let too_many = u32::MAX as usize + 1;
        let config = SimulationConfig { customers: too_many, ..small(0) };
        assert_eq!(config.validate(), Err(SimulationError::TooManyCustomers(too_many)));
        let config = SimulationConfig { terminals: too_many, ..small(0) };
        assert_eq!(config.validate(), Err(SimulationError::TooManyTerminals(too_many)));
    }

    #[test]
    fn time_order_breaks_ties_by_index_in_both_key_layouts() {
        let rows = |seconds: &[u64]| -> Vec<Row> {
            seconds.iter().map(|&seconds| Row { seconds, amount: 1.0, customer: 0, terminal: 0 }).collect()
        };
        assert_eq!(time_order(&rows(&[5, 3, 5, 0, 3, 9])), vec![3, 1, 4, 0, 2, 5]);
        // Times too large to share a u64 with the index take the wide path.
        assert_eq!(time_order(&rows(&[u64::MAX - 1, 7, u64::MAX - 1, 7])), vec![1, 3, 0, 2]);
        assert!(time_order(&[]).is_empty());
        assert_eq!(time_order(&rows(&[42])), vec![0]);
    }
}
