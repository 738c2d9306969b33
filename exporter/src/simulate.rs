//! The built-in transaction simulator (the handbook's generative process). To be written.

use crate::{Progress, Transactions};
use scorer::Timestamp;

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
        }
    }
}

/// Simulates a transaction history, sorted by time, with labels and fraud scenarios.
pub fn simulate(_config: &SimulationConfig, _progress: &dyn Progress) -> Transactions {
    Transactions::default()
}
