//! Webhook alerts for `review` and `decline` decisions: a bounded queue drained by one sender
//! thread that POSTs each alert to every configured webhook, with retries and backoff. Scoring
//! never waits: when the queue is full the alert is dropped and counted.

use prometheus_client::metrics::counter::Counter;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

/// How alerts are sent.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    /// Webhook URLs (`http://...`); each alert is POSTed to every one, as JSON.
    pub webhooks: Vec<String>,
    /// Alerts waiting at most; beyond, new alerts are dropped (default 10,000).
    pub queue: usize,
    /// Attempts per webhook and alert (default 4).
    pub attempts: u32,
    /// Wait before the first retry; doubled at each further one (default 100 ms).
    pub backoff: Duration,
    /// Time limit of one POST (default 2 s).
    pub timeout: Duration,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            webhooks: Vec::new(),
            queue: 10_000,
            attempts: 4,
            backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The alert counters, registered with the service's metrics.
#[derive(Clone, Default)]
pub struct AlertCounters {
    /// Alerts a webhook accepted (2xx).
    pub sent: Counter,
    /// Alerts a webhook still refused or could not be reached for after every attempt.
    pub failed: Counter,
    /// Alerts dropped because the queue was full.
    pub dropped: Counter,
    /// Retries made.
    pub retries: Counter,
}

/// The sending side; the sender thread stops when this is dropped.
pub struct Alerts {
    queue: Option<SyncSender<Vec<u8>>>,
    counters: AlertCounters,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Alerts {
    /// Starts the sender thread (none when there is no webhook).
    pub fn start(config: AlertConfig, counters: AlertCounters) -> Alerts {
        if config.webhooks.is_empty() {
            return Alerts { queue: None, counters, thread: None };
        }
        let (tx, rx) = sync_channel(config.queue.max(1));
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-alerts".into())
            .spawn(move || send_loop(config, rx, c))
            .ok();
        Alerts { queue: Some(tx), counters, thread }
    }

    /// Queues one alert (a JSON body) without waiting; a full queue drops it.
    pub fn offer(&self, body: Vec<u8>) {
        if let Some(q) = &self.queue
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = q.try_send(body)
        {
            self.counters.dropped.inc();
        }
    }

    /// Whether any webhook is configured.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_loop(config: AlertConfig, rx: Receiver<Vec<u8>>, counters: AlertCounters) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .build()
        .into();
    while let Ok(body) = rx.recv() {
        for url in &config.webhooks {
            let mut wait = config.backoff;
            let mut delivered = false;
            for attempt in 0..config.attempts.max(1) {
                if attempt > 0 {
                    counters.retries.inc();
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                let sent = agent.post(url).header("content-type", "application/json").send(&body[..]);
                if sent.is_ok_and(|r| r.status().is_success()) {
                    delivered = true;
                    break;
                }
            }
            if delivered {
                counters.sent.inc()
            } else {
                counters.failed.inc()
            };
        }
    }
}
