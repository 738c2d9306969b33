//! Idempotency by transaction id: within a window, a gateway's retry of a transaction gets the
//! response it was first given, and is neither logged nor counted twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A first answer, kept for the window.
#[derive(Clone, Debug)]
pub struct Remembered {
    /// The response body as first sent.
    pub body: Vec<u8>,
    /// Whether that body is JSON (else MessagePack).
    pub json: bool,
    /// The snapshot that answered (`x-tollgate-snapshot` of the replayed answer too).
    pub snapshot: Option<String>,
}

/// Answers by transaction id, forgotten after `window` or when `capacity` is exceeded (oldest
/// first).
pub struct Window {
    window: Duration,
    capacity: usize,
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    map: HashMap<String, (Instant, Remembered)>,
    order: VecDeque<(Instant, String)>,
}

impl Window {
    /// A window of `window` (zero turns idempotency off) holding at most `capacity` answers.
    pub fn new(window: Duration, capacity: usize) -> Window {
        Window { window, capacity, inner: Mutex::new(State::default()) }
    }

    /// Whether idempotency is on.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero() && self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first answer to `id`, if it is still within the window.
    pub fn get(&self, id: &str) -> Option<Remembered> {
        let state = self.lock();
        let (at, r) = state.map.get(id)?;
        (at.elapsed() < self.window).then(|| r.clone())
    }

    /// Remembers the first answer to `id` (a later one for the same id does not replace it).
    pub fn put(&self, id: String, answer: Remembered) {
        let now = Instant::now();
        let mut state = self.lock();
        while let Some((at, _)) = state.order.front() {
            if now.duration_since(*at) < self.window && state.order.len() < self.capacity {
                break;
            }
            if let Some((at, old)) = state.order.pop_front() {
                // Only forget the entry this queue slot put there.
                if state.map.get(&old).is_some_and(|(t, _)| *t == at) {
                    state.map.remove(&old);
                }
            }
        }
        if let Some((at, _)) = state.map.get(&id)
            && now.duration_since(*at) < self.window
        {
            return;
        }
        state.order.push_back((now, id.clone()));
        state.map.insert(id, (now, answer));
    }

    /// Answers held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no answer is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
