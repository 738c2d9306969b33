//! The decision log: every decision appended to rotated Parquet files that any Parquet tool reads
//! (`SELECT * FROM 'dir/*.parquet'`). Rows go through a write-ahead segment first, because a
//! Parquet file cannot be appended to or read after a crash mid-write; closed segments are rolled
//! into Parquet by a thread of their own, and segments a crash left behind are rolled on `open`.
//!
//! # Brief overview
//! [`DecisionLog::open`] recovers the directory and starts two threads. [`DecisionLog::append`]
//! hands [`DecisionRecord`]s (built by [`records`] from a scored [`Exchange`]) to the writer
//! thread over a bounded queue and never blocks. The writer encodes every row that is waiting
//! into the open segment with one `write`, so a row reaches the OS as soon as the writer is free.
//! With [`DecisionLogConfig::durable`] it then calls `fdatasync` once for the whole group (group
//! commit) and only then answers each row's [`Pending`]; without, segments are synced every
//! [`DecisionLogConfig::sync_interval`]. A segment is closed after
//! [`DecisionLogConfig::rotate_rows`] rows or [`DecisionLogConfig::rotate_interval`], and the
//! roller thread writes it as `decisions-<start>-<seq>.parquet` (temp file, fsync, rename, fsync
//! of the directory) before deleting it. Logging never fails scoring: a full queue, a failed
//! write or fsync drop rows (or make them not durable), count them in [`DecisionLogCounters`] and
//! print one line on stderr per fault (at most one every 10 s while it lasts).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use host::decision_log::{DecisionLog, DecisionLogConfig, DecisionLogCounters, Exchange, records};
//! let edge = scorer::snapshot::EdgeKey::from_text(&std::fs::read_to_string("edge.key")?)?;
//! let config = DecisionLogConfig { durable: true, ..DecisionLogConfig::new("decisions") };
//! let log = DecisionLog::open(config, edge.id_hash().clone(), DecisionLogCounters::default())?;
//! # let (request, response) = (b"{}".as_slice(), b"{}".as_slice());
//! let exchange =
//!     Exchange { request_id: "r-1", request, response, batch: false, decided_at_us: 0, latency_us: 0, shadow: None };
//! let durable = log.append(records(&exchange, log.id_hash())).wait_blocking();
//! # let _ = durable;
//! # Ok(()) }
//! ```

#[cfg(feature = "delta-lake")]
mod delta;
#[cfg(feature = "kafka")]
mod kafka;
mod parquet_file;
mod record;
mod wal;

pub use parquet_file::{files, read_dir, read_file, schema};
pub use record::{DecisionRecord, Exchange, Reason, ShadowDecision, parse_decision, records};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use scorer::policy::Decision;
use scorer::snapshot::IdHashKey;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the decision log writes. [`DecisionLogConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct DecisionLogConfig {
    /// The directory of the segments and Parquet files (created when missing).
    pub dir: PathBuf,
    /// Answer a row's [`Pending`] only once its segment bytes are fsync'd (default false).
    pub durable: bool,
    /// Rows after which a segment is rolled into a Parquet file (default 100,000).
    pub rotate_rows: usize,
    /// Age after which a segment is rolled into a Parquet file (default 5 minutes).
    pub rotate_interval: Duration,
    /// Without `durable`: how often written rows are fsync'd (default 1 s), the most a power loss
    /// can take.
    pub sync_interval: Duration,
    /// With `durable`: how long [`Pending::wait`] waits for the fsync before it answers
    /// [`Durability::Failed`] (default 1 s), so a stalled disk cannot stall scoring.
    pub durable_timeout: Duration,
    /// Rows waiting for the writer at most; beyond, new rows are dropped (default 100,000).
    pub queue_rows: usize,
    /// Also keep the directory a Delta Lake table (`_delta_log/`, every Parquet file committed
    /// once it is written); needs the `delta-lake` feature (default false).
    pub delta_lake: bool,
    /// Also publish every row to this Kafka topic, as JSON; needs the `kafka` feature (default
    /// none).
    pub kafka: Option<KafkaTopic>,
}

/// A Kafka topic: where the decision log publishes its rows, or the service its analysts' labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTopic {
    /// The brokers to bootstrap from (`host:port[,host:port...]`).
    pub brokers: String,
    /// The topic's name.
    pub topic: String,
}

impl DecisionLogConfig {
    /// The defaults, writing to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DecisionLogConfig {
        DecisionLogConfig {
            dir: dir.into(),
            durable: false,
            rotate_rows: 100_000,
            rotate_interval: Duration::from_secs(300),
            sync_interval: Duration::from_secs(1),
            durable_timeout: Duration::from_secs(1),
            queue_rows: 100_000,
            delta_lake: false,
            kafka: None,
        }
    }
}

/// Why the decision log could not be opened or a file not be written.
#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The Delta Lake table of the directory could not be created, read or committed to.
    #[error("{}: Delta Lake table: {message}", path.display())]
    Delta {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `delta_lake` was asked of a host built without the `delta-lake` feature.
    #[error("{}: this build has no Delta Lake support (the host's `delta-lake` feature)", path.display())]
    NoDeltaLake {
        /// The directory.
        path: PathBuf,
    },
    /// The Kafka producer for the decision topic could not be made (bad broker list or option).
    #[error("Kafka topic {topic}: {message}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What librdkafka said.
        message: String,
    },
    /// `kafka` was asked of a host built without the `kafka` feature.
    #[error("Kafka topic {topic}: this build has no Kafka support (the host's `kafka` feature)")]
    NoKafka {
        /// The topic.
        topic: String,
    },
    /// Another process holds the directory's lock file.
    #[error("{}: another process is writing this decision log (its .lock is held)", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
}

/// A stage of the log where an I/O error can happen (the `stage` label of the error counter).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `open` (a new segment), `write`, `sync`, `roll` (segment to Parquet), `recover` or `delta`
    /// (a Delta Lake commit).
    pub stage: &'static str,
}

/// The stages, in the order they are exported.
pub const STAGES: [&str; 6] = ["open", "write", "sync", "roll", "recover", "delta"];

/// The log's counters; the service registers them as `tollgate_decision_log_*`.
#[derive(Clone, Debug, Default)]
pub struct DecisionLogCounters {
    /// Rows written to a segment.
    pub rows: Counter,
    /// Rows not logged: the queue was full, or their write failed.
    pub dropped: Counter,
    /// I/O errors by stage.
    pub errors: Family<StageLabel, Counter>,
    /// Parquet files written (recovered segments included).
    pub files: Counter,
    /// With `durable`: answers whose rows were not made durable (dropped, failed fsync, timeout).
    pub not_durable: Counter,
    /// Rows waiting for the writer now.
    pub queued: Gauge,
    /// Rows delivered to the Kafka decision topic.
    pub published: Counter,
    /// Rows that could not be queued for, or delivered to, the Kafka decision topic.
    pub publish_failed: Counter,
}

impl DecisionLogCounters {
    fn error(&self, stage: &'static str) {
        self.errors.get_or_create(&StageLabel { stage }).inc();
    }

    /// I/O errors so far, every stage together.
    pub fn error_total(&self) -> u64 {
        STAGES.iter().map(|&stage| self.errors.get_or_create(&StageLabel { stage }).get()).sum()
    }
}

/// What [`DecisionLog::open`] found left by an earlier run and rolled into Parquet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments rolled (or found already rolled and removed).
    pub segments: usize,
    /// Rows they held.
    pub rows: u64,
    /// Bytes of torn records at segment ends (rows never acknowledged), skipped.
    pub torn_bytes: u64,
    /// Segments that could not be rolled yet; the roller thread keeps trying.
    pub failed: usize,
}

/// Whether appended rows were made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written and fsync'd (`durable` mode).
    Synced,
    /// Handed to the writer (not `durable`): in the OS within milliseconds, on disk within the
    /// sync interval.
    Queued,
    /// Not logged, or not known to be durable: the queue was full, a write or fsync failed, or
    /// the wait timed out.
    Failed,
}

enum Waiting {
    Ready(Durability),
    Fsync(tokio::sync::oneshot::Receiver<bool>),
}

/// The answer to a [`DecisionLog::append`]: ready at once, or after the group's fsync.
#[must_use = "with `durable`, wait for it before answering the caller"]
pub struct Pending {
    waiting: Waiting,
    timeout: Duration,
    not_durable: Counter,
}

impl Pending {
    fn ready(d: Durability) -> Pending {
        Pending { waiting: Waiting::Ready(d), timeout: Duration::ZERO, not_durable: Counter::default() }
    }

    /// Waits (asynchronously, at most [`DecisionLogConfig::durable_timeout`]) for the rows' fsync;
    /// without `durable` it answers at once. Needs a tokio runtime with time enabled.
    pub async fn wait(self) -> Durability {
        let Pending { waiting, timeout, not_durable } = self;
        match waiting {
            Waiting::Ready(d) => d,
            Waiting::Fsync(rx) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(true)) => Durability::Synced,
                _ => {
                    not_durable.inc();
                    Durability::Failed
                }
            },
        }
    }

    /// Blocks the thread until the rows' fsync (no timeout); for callers outside an async runtime.
    pub fn wait_blocking(self) -> Durability {
        let Pending { waiting, not_durable, .. } = self;
        match waiting {
            Waiting::Ready(d) => d,
            Waiting::Fsync(rx) => {
                if rx.blocking_recv() == Ok(true) {
                    Durability::Synced
                } else {
                    not_durable.inc();
                    Durability::Failed
                }
            }
        }
    }
}

/// Prints faults on stderr: a fault line at most every [`REPORT_EVERY`] (later faults are counted
/// into the next line), and one line when writing works again after a fault line, so that a
/// flapping disk prints at most two lines per period.
struct Reporter {
    failing: AtomicBool,
    state: Mutex<ReportState>,
}

#[derive(Default)]
struct ReportState {
    /// When the last fault line was printed.
    last: Option<Instant>,
    /// Faults since, not printed.
    suppressed: u64,
    /// A fault line was printed and no "writing again" since.
    told: bool,
}

/// The least time between two fault lines.
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl Reporter {
    fn new() -> Reporter {
        Reporter { failing: AtomicBool::new(false), state: Mutex::new(ReportState::default()) }
    }

    fn fault(&self, what: impl FnOnce() -> String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.failing.store(true, Ordering::Relaxed);
        if state.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            state.suppressed += 1;
            return;
        }
        let more = match state.suppressed {
            0 => String::new(),
            n => format!(" ({n} more faults since the last line)"),
        };
        eprintln!("tollgate: decision log: {}{more}; scoring goes on", what());
        *state = ReportState { last: Some(Instant::now()), suppressed: 0, told: true };
    }

    fn working(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.told {
                eprintln!("tollgate: decision log: writing again");
                state.told = false;
            }
        }
    }
}

enum Command {
    Rows(Vec<DecisionRecord>, Option<tokio::sync::oneshot::Sender<bool>>),
    Roll(Sender<()>),
}

enum RollerCommand {
    Segment(PathBuf),
    Barrier(Sender<()>),
}

/// The decision log of one directory: a handle on its writer and roller threads. Dropping it
/// writes what is queued and rolls the open segment into Parquet (a clean shutdown leaves no
/// segment behind).
pub struct DecisionLog {
    config: DecisionLogConfig,
    id_hash: IdHashKey,
    counters: DecisionLogCounters,
    queue: Option<Sender<Command>>,
    queued: Arc<AtomicUsize>,
    writer: Option<JoinHandle<()>>,
    recovery: Recovery,
    reporter: Arc<Reporter>,
    reviews: Mutex<VecDeque<DecisionRecord>>,
    _lock: File,
}

/// Review decisions the log keeps at hand for the analysts' queue ([`DecisionLog::reviews`]).
pub const REVIEW_QUEUE_ROWS: usize = 1_000;

impl DecisionLog {
    /// Opens (creating it when missing) and locks the directory, rolls the segments an earlier run
    /// left into Parquet, and starts the writer and roller threads. Entity ids are hashed with
    /// `id_hash` (the edge key's). Fails only when the directory cannot be created, listed or
    /// locked; a segment that cannot be rolled yet is counted and retried by the roller.
    pub fn open(
        config: DecisionLogConfig,
        id_hash: IdHashKey,
        counters: DecisionLogCounters,
    ) -> Result<DecisionLog, DecisionLogError> {
        let dir = config.dir.clone();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DecisionLogError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(DecisionLogError::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        for stage in STAGES {
            // Every series exists from the start, so that rate() sees the first error.
            let _ = counters.errors.get_or_create(&StageLabel { stage });
        }
        let reporter = Arc::new(Reporter::new());
        let mut segments = Vec::new();
        let mut next_seq = 0;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if name.starts_with(".decisions-") && name.ends_with(".tmp") {
                // A Parquet file a crash interrupted; its segment is still there.
                let _ = std::fs::remove_file(&path);
            } else if let Some(seq) = sequence(name) {
                next_seq = next_seq.max(seq + 1);
                if name.ends_with(".wal") {
                    segments.push(path);
                }
            }
        }
        segments.sort();
        let mut recovery = Recovery::default();
        let mut retry = Vec::new();
        for path in segments {
            match roll_segment(&path, &counters) {
                Ok(rolled) => {
                    recovery.segments += 1;
                    recovery.rows += rolled.rows;
                    recovery.torn_bytes += rolled.torn_bytes;
                }
                Err(e) => {
                    counters.error("recover");
                    reporter.fault(|| format!("recovering {}: {e}", path.display()));
                    recovery.failed += 1;
                    retry.push(path);
                }
            }
        }
        let reviews = reviews_on_disk(&dir, &counters, &reporter);
        let topic = Topic::open(&config, &counters, &reporter)?;
        let mut table = TableSync::open(&config)?;
        table.sync(&counters, &reporter);
        let (roll_tx, roll_rx) = mpsc::channel();
        let roller = {
            let (counters, reporter) = (counters.clone(), reporter.clone());
            std::thread::Builder::new()
                .name("tollgate-log-roll".into())
                .spawn(move || roll_loop(roll_rx, retry, table, &counters, &reporter))
                .map_err(io(&dir))?
        };
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            config: config.clone(),
            counters: counters.clone(),
            reporter: reporter.clone(),
            queued: queued.clone(),
            roller: Some(roll_tx),
            roller_thread: Some(roller),
            segment: None,
            next_seq,
            unsynced: false,
            last_sync: Instant::now(),
            hold_off_until: None,
            topic,
        };
        let writer = std::thread::Builder::new()
            .name("tollgate-log-write".into())
            .spawn(move || writer.run(rx))
            .map_err(io(&dir))?;
        Ok(DecisionLog {
            config,
            id_hash,
            counters,
            queue: Some(tx),
            queued,
            writer: Some(writer),
            recovery,
            reporter,
            reviews: Mutex::new(reviews),
            _lock: lock,
        })
    }

    /// Queues `rows` for the writer without blocking. A full queue drops them (counted). With
    /// `durable`, the [`Pending`] resolves once they are fsync'd.
    pub fn append(&self, rows: Vec<DecisionRecord>) -> Pending {
        let n = rows.len();
        self.remember_reviews(&rows);
        let done = if self.config.durable { Durability::Synced } else { Durability::Queued };
        if n == 0 {
            return Pending::ready(done);
        }
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before + n > self.config.queue_rows {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return self.drop_rows(n, "the queue is full (the disk does not keep up)");
        }
        self.counters.queued.set(i64::try_from(before + n).unwrap_or(i64::MAX));
        let (ack, waiting) = if self.config.durable {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Waiting::Fsync(rx))
        } else {
            (None, Waiting::Ready(Durability::Queued))
        };
        let sent = self.queue.as_ref().is_some_and(|q| q.send(Command::Rows(rows, ack)).is_ok());
        if !sent {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return self.drop_rows(n, "the writer thread is gone");
        }
        Pending {
            waiting,
            timeout: self.config.durable_timeout,
            not_durable: self.counters.not_durable.clone(),
        }
    }

    /// The latest review decisions, newest first, at most `limit` (and at most
    /// [`REVIEW_QUEUE_ROWS`]): the analysts' review queue. Seeded from the newest Parquet files
    /// when the log opens, then kept as rows are appended.
    pub fn reviews(&self, limit: usize) -> Vec<DecisionRecord> {
        let reviews = self.reviews.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reviews.iter().rev().take(limit).cloned().collect()
    }

    fn remember_reviews(&self, rows: &[DecisionRecord]) {
        let mut fresh = rows.iter().filter(|r| r.decision == Decision::Review).peekable();
        if fresh.peek().is_none() {
            return;
        }
        let mut reviews = self.reviews.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for row in fresh {
            if reviews.len() == REVIEW_QUEUE_ROWS {
                reviews.pop_front();
            }
            reviews.push_back(row.clone());
        }
    }

    fn drop_rows(&self, n: usize, why: &str) -> Pending {
        self.counters.dropped.inc_by(n as u64);
        if self.config.durable {
            self.counters.not_durable.inc();
        }
        self.reporter.fault(|| format!("{n} rows dropped: {why}"));
        Pending::ready(Durability::Failed)
    }

    /// Closes the open segment and waits until every closed segment is a Parquet file (or has
    /// failed to become one: see the error counters). For tests, audits and shutdown.
    pub fn roll(&self) {
        let (tx, rx) = mpsc::channel();
        if self.queue.as_ref().is_some_and(|q| q.send(Command::Roll(tx)).is_ok()) {
            let _ = rx.recv();
        }
    }

    /// The key entity ids are hashed with.
    pub fn id_hash(&self) -> &IdHashKey {
        &self.id_hash
    }

    /// How it writes.
    pub fn config(&self) -> &DecisionLogConfig {
        &self.config
    }

    /// What `open` recovered.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Its counters.
    pub fn counters(&self) -> &DecisionLogCounters {
        &self.counters
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

/// The sequence number in a file name `decisions-<start>-<seq>.wal|parquet`.
fn sequence(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("decisions-")?;
    let stem = stem.strip_suffix(".wal").or_else(|| stem.strip_suffix(".parquet"))?;
    stem.rsplit('-').next()?.parse().ok()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The newest [`REVIEW_QUEUE_ROWS`] review decisions of the Parquet files in `dir`, oldest first.
/// A file that cannot be read is counted and skipped: the queue is a convenience, not the record.
fn reviews_on_disk(
    dir: &Path,
    counters: &DecisionLogCounters,
    reporter: &Reporter,
) -> VecDeque<DecisionRecord> {
    let mut newest_first = Vec::new();
    let files = parquet_file::files(dir).unwrap_or_default();
    for path in files.iter().rev() {
        match parquet_file::read_file(path) {
            Ok(rows) => {
                newest_first.extend(rows.into_iter().rev().filter(|r| r.decision == Decision::Review));
            }
            Err(e) => {
                counters.error("recover");
                reporter.fault(|| format!("reading review decisions from {}: {e}", path.display()));
            }
        }
        if newest_first.len() >= REVIEW_QUEUE_ROWS {
            break;
        }
    }
    newest_first.truncate(REVIEW_QUEUE_ROWS);
    newest_first.into_iter().rev().collect()
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) { File::open(dir)?.sync_all() } else { Ok(()) }
}

struct Rolled {
    rows: u64,
    torn_bytes: u64,
}

/// Rolls one closed segment into its Parquet file, then deletes it. A segment whose Parquet file
/// exists was rolled before a crash took the deletion: it is only deleted, so no row is there twice.
fn roll_segment(path: &Path, counters: &DecisionLogCounters) -> Result<Rolled, DecisionLogError> {
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| DecisionLogError::Io { path, source }
    };
    let parquet = path.with_extension("parquet");
    let dir = path.parent().unwrap_or(Path::new("."));
    if parquet.exists() {
        std::fs::remove_file(path).map_err(io(path))?;
        return Ok(Rolled { rows: 0, torn_bytes: 0 });
    }
    let contents = wal::read(path).map_err(io(path))?;
    if !contents.records.is_empty() {
        let name = parquet.file_name().and_then(|n| n.to_str()).unwrap_or("decisions.parquet");
        let tmp = dir.join(format!(".{name}.tmp"));
        if let Err(e) = parquet_file::write(&tmp, &contents.records) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &parquet).map_err(io(&parquet))?;
        sync_dir(dir).map_err(io(dir))?;
        counters.files.inc();
    }
    std::fs::remove_file(path).map_err(io(path))?;
    Ok(Rolled { rows: contents.records.len() as u64, torn_bytes: contents.torn_bytes })
}

/// How long the roller waits before trying a failed segment again.
const ROLL_RETRY: Duration = Duration::from_secs(30);

fn roll_loop(
    rx: Receiver<RollerCommand>,
    mut pending: Vec<PathBuf>,
    mut table: TableSync,
    counters: &DecisionLogCounters,
    reporter: &Reporter,
) {
    let roll_all = |pending: &mut Vec<PathBuf>, table: &mut TableSync| {
        let before = pending.len();
        pending.retain(|path| match roll_segment(path, counters) {
            Ok(_) => false,
            Err(e) => {
                counters.error("roll");
                reporter.fault(|| {
                    format!("rolling {} into Parquet: {e} (kept, tried again later)", path.display())
                });
                true
            }
        });
        if before > 0 || table.behind() {
            table.sync(counters, reporter);
        }
    };
    loop {
        let command = if pending.is_empty() && !table.behind() {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        } else {
            match rx.recv_timeout(ROLL_RETRY) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        match command {
            Some(RollerCommand::Segment(path)) => pending.push(path),
            Some(RollerCommand::Barrier(done)) => {
                roll_all(&mut pending, &mut table);
                let _ = done.send(());
                continue;
            }
            None => {}
        }
        roll_all(&mut pending, &mut table);
    }
    roll_all(&mut pending, &mut table);
}

/// The directory's Delta Lake table, when the log keeps one, and whether it lags the directory
/// (a commit failed: the next roll, or the retry timer, tries again).
enum TableSync {
    Off,
    #[cfg(feature = "delta-lake")]
    On {
        table: delta::DeltaTable,
        behind: bool,
    },
}

impl TableSync {
    fn open(config: &DecisionLogConfig) -> Result<TableSync, DecisionLogError> {
        if !config.delta_lake {
            return Ok(TableSync::Off);
        }
        #[cfg(feature = "delta-lake")]
        return Ok(TableSync::On { table: delta::DeltaTable::open(&config.dir)?, behind: false });
        #[cfg(not(feature = "delta-lake"))]
        Err(DecisionLogError::NoDeltaLake { path: config.dir.clone() })
    }

    fn behind(&self) -> bool {
        match self {
            TableSync::Off => false,
            #[cfg(feature = "delta-lake")]
            TableSync::On { behind, .. } => *behind,
        }
    }

    /// Commits the Parquet files the table does not list yet; a failure is counted and reported.
    #[cfg_attr(not(feature = "delta-lake"), allow(unused_variables))]
    fn sync(&mut self, counters: &DecisionLogCounters, reporter: &Reporter) {
        match self {
            TableSync::Off => {}
            #[cfg(feature = "delta-lake")]
            TableSync::On { table, behind } => match table.sync() {
                Ok(_) => *behind = false,
                Err(e) => {
                    counters.error("delta");
                    reporter.fault(|| format!("{e} (tried again later)"));
                    *behind = true;
                }
            },
        }
    }
}

/// The open segment.
struct Segment {
    file: File,
    path: PathBuf,
    /// Bytes written (and kept) so far.
    len: u64,
    rows: usize,
    opened: Instant,
}

/// How long the writer drops rows after a segment could not be opened or written, rather than
/// try again for every row while the disk is full.
const HOLD_OFF: Duration = Duration::from_secs(1);

/// Largest group the writer gathers before it writes.
const MAX_GROUP_BYTES: usize = 8 << 20;

struct Writer {
    config: DecisionLogConfig,
    counters: DecisionLogCounters,
    reporter: Arc<Reporter>,
    queued: Arc<AtomicUsize>,
    roller: Option<Sender<RollerCommand>>,
    roller_thread: Option<JoinHandle<()>>,
    segment: Option<Segment>,
    next_seq: u64,
    unsynced: bool,
    last_sync: Instant,
    hold_off_until: Option<Instant>,
    topic: Topic,
}

/// The Kafka topic every row is also published to, when the log has one.
struct Topic(#[cfg(feature = "kafka")] Option<kafka::KafkaSink>);

impl Topic {
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    fn open(
        config: &DecisionLogConfig,
        counters: &DecisionLogCounters,
        reporter: &Arc<Reporter>,
    ) -> Result<Topic, DecisionLogError> {
        let Some(topic) = &config.kafka else {
            #[cfg(feature = "kafka")]
            return Ok(Topic(None));
            #[cfg(not(feature = "kafka"))]
            return Ok(Topic());
        };
        #[cfg(feature = "kafka")]
        return Ok(Topic(Some(kafka::KafkaSink::open(topic, counters, reporter)?)));
        #[cfg(not(feature = "kafka"))]
        Err(DecisionLogError::NoKafka { topic: topic.topic.clone() })
    }

    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    fn publish(&self, row: &DecisionRecord) {
        #[cfg(feature = "kafka")]
        if let Some(sink) = &self.0 {
            sink.publish(row);
        }
    }

    fn flush(&self) {
        #[cfg(feature = "kafka")]
        if let Some(sink) = &self.0 {
            sink.flush();
        }
    }
}

/// One round's rows, encoded, with who waits for them.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    rows: usize,
    taken: usize,
    waiters: Vec<tokio::sync::oneshot::Sender<bool>>,
    rolls: Vec<Sender<()>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        let mut group = Group::default();
        loop {
            let first = match self.next_wake() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => rx.recv_timeout(wait),
            };
            let mut closed = false;
            match first {
                Ok(c) => self.take(c, &mut group),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closed = true,
            }
            // Group commit: every row already waiting joins this write and this fsync.
            while !closed && group.bytes.len() < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(c) => self.take(c, &mut group),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
            self.commit(&mut group, closed);
            if closed {
                break;
            }
        }
        self.close_segment();
        self.topic.flush();
        self.roller.take();
        if let Some(t) = self.roller_thread.take() {
            let _ = t.join();
        }
    }

    fn take(&self, command: Command, group: &mut Group) {
        match command {
            Command::Rows(rows, ack) => {
                group.taken += rows.len();
                let mut all = true;
                for row in &rows {
                    // Published whatever the disk does: the topic is a second copy, not a replica.
                    self.topic.publish(row);
                    if wal::encode(row, &mut group.bytes) {
                        group.rows += 1;
                    } else {
                        all = false;
                        self.counters.dropped.inc();
                        self.counters.error("write");
                    }
                }
                match ack {
                    Some(ack) if !all => {
                        let _ = ack.send(false);
                    }
                    ack => group.waiters.extend(ack),
                }
            }
            Command::Roll(done) => group.rolls.push(done),
        }
    }

    /// Writes and (when due) syncs a group, answers its waiters, rotates.
    fn commit(&mut self, group: &mut Group, closing: bool) {
        let left = self.queued.fetch_sub(group.taken, Ordering::SeqCst).saturating_sub(group.taken);
        self.counters.queued.set(i64::try_from(left).unwrap_or(i64::MAX));
        let written = group.rows == 0 || self.write(&group.bytes, group.rows);
        let durable = if !group.waiters.is_empty() {
            written && self.sync()
        } else {
            if self.unsynced && (closing || self.last_sync.elapsed() >= self.config.sync_interval) {
                self.sync();
            }
            written
        };
        for w in group.waiters.drain(..) {
            let _ = w.send(durable);
        }
        let due = self.segment.as_ref().is_some_and(|s| {
            s.rows >= self.config.rotate_rows.max(1) || s.opened.elapsed() >= self.config.rotate_interval
        });
        if due || !group.rolls.is_empty() {
            self.close_segment();
        }
        for done in group.rolls.drain(..) {
            match &self.roller {
                Some(r) => {
                    let _ = r.send(RollerCommand::Barrier(done));
                }
                None => {
                    let _ = done.send(());
                }
            }
        }
        group.bytes.clear();
        group.rows = 0;
        group.taken = 0;
    }

    /// When the writer must wake without a row: the open segment's rotation, the next sync.
    fn next_wake(&self) -> Option<Duration> {
        let rotate =
            self.segment.as_ref().map(|s| self.config.rotate_interval.saturating_sub(s.opened.elapsed()));
        let sync = self.unsynced.then(|| self.config.sync_interval.saturating_sub(self.last_sync.elapsed()));
        match (rotate, sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn open_segment(&mut self) -> io::Result<Segment> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let d = scorer::Timestamp(now).to_datetime();
        let name = format!(
            "decisions-{:04}{:02}{:02}T{:02}{:02}{:02}Z-{seq:06}.wal",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        );
        let path = self.config.dir.join(name);
        let mut file = File::options().create_new(true).append(true).open(&path)?;
        let started = file.write_all(wal::MAGIC).and_then(|()| sync_dir(&self.config.dir));
        if let Err(e) = started {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment { file, path, len: wal::MAGIC.len() as u64, rows: 0, opened: Instant::now() })
    }

    /// Writes a group to the open segment (opening one when none is), once more to a fresh
    /// segment when the first write fails; false when the rows were dropped. After a failure the
    /// writer drops rows for [`HOLD_OFF`] instead of trying again for each group.
    fn write(&mut self, bytes: &[u8], rows: usize) -> bool {
        if self.hold_off_until.is_some_and(|t| Instant::now() < t) {
            self.counters.dropped.inc_by(rows as u64);
            return false;
        }
        for attempt in 0..2 {
            if self.segment.is_none() {
                match self.open_segment() {
                    Ok(s) => self.segment = Some(s),
                    Err(e) => {
                        self.counters.error("open");
                        let dir = self.config.dir.display();
                        self.reporter.fault(|| format!("cannot start a segment in {dir}: {e}"));
                        break;
                    }
                }
            }
            let Some(seg) = self.segment.as_mut() else { break };
            match seg.file.write_all(bytes) {
                Ok(()) => {
                    seg.len += bytes.len() as u64;
                    seg.rows += rows;
                    self.unsynced = true;
                    self.counters.rows.inc_by(rows as u64);
                    self.reporter.working();
                    return true;
                }
                Err(e) => {
                    self.counters.error("write");
                    let path = seg.path.display();
                    self.reporter.fault(|| format!("writing {path}: {e}"));
                    // Cut what part of the group got in, so that no row of a dropped group is
                    // recovered later, nor is there twice after the retry.
                    let cut = seg.file.set_len(seg.len).is_ok();
                    self.abandon();
                    if !cut || attempt == 1 {
                        break;
                    }
                }
            }
        }
        self.hold_off_until = Some(Instant::now() + HOLD_OFF);
        self.counters.dropped.inc_by(rows as u64);
        false
    }

    /// fsyncs the open segment; false (and the segment abandoned) when that fails.
    fn sync(&mut self) -> bool {
        let Some(seg) = &self.segment else { return !self.unsynced };
        match seg.file.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                true
            }
            Err(e) => {
                self.counters.error("sync");
                let path = seg.path.display();
                self.reporter.fault(|| format!("fsync of {path}: {e}"));
                // After a failed fsync the kernel may have dropped the dirty pages: start afresh.
                self.abandon();
                false
            }
        }
    }

    /// Closes the open segment (synced) and hands it to the roller.
    fn close_segment(&mut self) {
        if self.unsynced {
            self.sync();
        }
        self.abandon();
    }

    /// Hands the open segment, as it is, to the roller.
    fn abandon(&mut self) {
        if let Some(seg) = self.segment.take() {
            self.unsynced = false;
            drop(seg.file);
            if let Some(r) = &self.roller {
                let _ = r.send(RollerCommand::Segment(seg.path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorer::policy::Decision;

    /// A sample row; `i` varies every field, with and without a shadow answer.
    pub(super) fn row(i: u32) -> DecisionRecord {
        DecisionRecord {
            decided_at_us: 1_700_000_000_000_000 + i64::from(i),
            request_id: format!("r{i}"),
            batch_index: None,
            transaction_id: Some(format!("t{i}")),
            customer_key: Some(u64::from(i)),
            terminal_key: Some(u64::MAX),
            amount: Some(f64::from(i) + 0.25),
            score: if i.is_multiple_of(2) { Some(0.1 + f64::from(i) / 1000.0) } else { None },
            decision: Decision::Review,
            rules: if i.is_multiple_of(3) { vec!["AMOUNT_CAP".into(), "BLOCKED".into()] } else { vec![] },
            reasons: vec![Reason { feature: "F".into(), value: None, contribution: Some(-0.5) }],
            snapshot_id: Some("s".into()),
            model_id: None,
            latency_us: u64::from(i),
            fallback: None,
            // Rows with a shadow answer, with one that errored, and without: all three round-trip.
            shadow: match i % 4 {
                1 => Some(ShadowDecision {
                    snapshot_id: Some("cand".into()),
                    model_id: Some("m2".into()),
                    score: Some(0.75),
                    decision: Some(Decision::Decline),
                    rules: vec!["BLOCKED".into()],
                    fallback: None,
                    error: None,
                }),
                3 => Some(ShadowDecision {
                    snapshot_id: Some("cand".into()),
                    model_id: None,
                    score: None,
                    decision: None,
                    rules: vec![],
                    fallback: Some("timeout: slow".into()),
                    error: Some("no answer".into()),
                }),
                _ => None,
            },
        }
    }

    fn segment(rows: &[DecisionRecord]) -> Vec<u8> {
        let mut bytes = wal::MAGIC.to_vec();
        for r in rows {
            assert!(wal::encode(r, &mut bytes));
        }
        bytes
    }

    #[test]
    fn open_rolls_what_a_crash_left_exactly_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        // Killed mid-write: three whole rows and five bytes of a fourth.
        let mut torn = segment(&[row(0), row(1), row(2)]);
        let whole = torn.len();
        torn.extend_from_slice(&segment(&[row(3)])[wal::MAGIC.len()..]);
        std::fs::write(d.join("decisions-20260101T000000Z-000007.wal"), &torn[..whole + 5])?;
        // Killed after the Parquet file was renamed into place, before its segment was deleted.
        parquet_file::write(&d.join("decisions-20260101T000000Z-000003.parquet"), &[row(10), row(11)])?;
        std::fs::write(d.join("decisions-20260101T000000Z-000003.wal"), segment(&[row(10), row(11)]))?;
        // Killed while writing a Parquet file.
        std::fs::write(d.join(".decisions-20260101T000000Z-000005.parquet.tmp"), b"half")?;

        let counters = DecisionLogCounters::default();
        let log = DecisionLog::open(DecisionLogConfig::new(d), IdHashKey([1; 16]), counters.clone())?;
        assert_eq!(log.recovery(), &Recovery { segments: 2, rows: 3, torn_bytes: 5, failed: 0 });
        assert_eq!(read_dir(d)?, vec![row(10), row(11), row(0), row(1), row(2)]);
        let names = || -> std::io::Result<Vec<String>> {
            let mut n: Vec<String> = std::fs::read_dir(d)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            Ok(n)
        };
        assert_eq!(
            names()?,
            [
                ".lock",
                "decisions-20260101T000000Z-000003.parquet",
                "decisions-20260101T000000Z-000007.parquet"
            ]
        );
        // New segments go on from the highest sequence number found.
        assert_eq!(log.append(vec![row(20), row(21)]).wait_blocking(), Durability::Queued);
        log.roll();
        let last = names()?.pop().unwrap_or_default();
        assert!(last.ends_with("-000008.parquet"), "{last}");
        assert_eq!(read_dir(d)?.len(), 7);
        assert_eq!((counters.rows.get(), counters.files.get(), counters.error_total()), (2, 2, 0));
        Ok(())
    }

    #[test]
    fn a_full_queue_drops_rows_and_counts_them() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = DecisionLogConfig { queue_rows: 2, durable: true, ..DecisionLogConfig::new(dir.path()) };
        let counters = DecisionLogCounters::default();
        let log = DecisionLog::open(config, IdHashKey([1; 16]), counters.clone())?;
        let too_many = log.append((0..3).map(row).collect());
        assert_eq!(too_many.wait_blocking(), Durability::Failed);
        assert_eq!((counters.dropped.get(), counters.not_durable.get()), (3, 1));
        assert_eq!(log.append(vec![row(1)]).wait_blocking(), Durability::Synced);
        drop(log);
        assert_eq!(read_dir(dir.path())?, vec![row(1)]);
        Ok(())
    }
}
