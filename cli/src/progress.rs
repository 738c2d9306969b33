//! Progress bars on standard error for the exporter's long work (hidden when not a terminal).

use exporter::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::{Mutex, MutexGuard};

/// Draws one indicatif bar per phase that the library announces.
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn slot(&self) -> MutexGuard<'_, Option<ProgressBar>> {
        // A panic while drawing leaves nothing inconsistent in an Option<ProgressBar>.
        self.bar.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Progress for Bars {
    fn start(&self, phase: &str, total: u64) {
        let bar = if total == 0 { ProgressBar::new_spinner() } else { ProgressBar::new(total) };
        let template = if total == 0 {
            "{spinner} {prefix:>10} {human_pos} {elapsed}"
        } else {
            "{prefix:>10} [{bar:40}] {human_pos}/{human_len} {percent}% eta {eta}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.to_string());
        if let Some(old) = self.slot().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, units: u64) {
        if let Some(bar) = self.slot().as_ref() {
            bar.inc(units);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.slot().take() {
            bar.finish_and_clear();
        }
    }
}
