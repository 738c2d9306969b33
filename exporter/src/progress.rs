//! Progress reporting for long work. The library only counts; the CLI turns counts into bars.

/// Receives progress from long-running work. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// Announces a new phase with its name and total units of work (0 when unknown).
    fn start(&self, phase: &str, total: u64);
    /// Reports `units` more units of work done in the current phase.
    fn advance(&self, units: u64);
    /// Marks the current phase finished.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _units: u64) {}
    fn finish(&self) {}
}
