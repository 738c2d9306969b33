//! Gzip decompression on a second thread, so that inflating and CSV parsing overlap on two cores:
//! the thread fills buffers and sends them down a bounded channel; [`GunzipReader`] is the
//! parser's side, a plain [`Read`] that also reports progress in compressed bytes.

use crate::Progress;
use flate2::bufread::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

/// Decompressed bytes per buffer sent from the inflating thread.
const CHUNK: usize = 1 << 18;
/// Buffers in flight between the two threads.
const IN_FLIGHT: usize = 4;

/// Why the decompressed stream ended early.
#[derive(Debug)]
pub(super) enum GunzipError {
    /// Reading the file failed.
    File(io::Error),
    /// The gzip data ended before its end-of-stream marker.
    Truncated,
    /// The gzip data is corrupt (bad header, bad deflate data, checksum mismatch).
    Corrupt(io::Error),
    /// The inflating thread stopped without saying why.
    Lost,
}

/// What the inflating thread sends.
pub(super) enum Message {
    Data { buf: Vec<u8>, len: usize, compressed: u64 },
    End { compressed: u64 },
    Failed(GunzipError),
}

/// Counts the compressed bytes read and remembers whether the file itself failed.
struct Counted {
    file: File,
    bytes: u64,
    failed: bool,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = e.kind() != io::ErrorKind::Interrupted;
                Err(e)
            }
        }
    }
}

/// Inflates `file` into buffers sent down `out`, reusing the buffers that come back on `free`.
/// Returns when the data ends, fails, or the reader hangs up.
pub(super) fn inflate(file: File, ends: InflaterEnds) {
    let InflaterEnds { data: out, free } = ends;
    let mut decoder =
        MultiGzDecoder::new(BufReader::with_capacity(CHUNK, Counted { file, bytes: 0, failed: false }));
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let mut len = 0;
        let mut end = false;
        while len < buf.len() {
            match decoder.read(&mut buf[len..]) {
                Ok(0) => {
                    end = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let error = if decoder.get_ref().get_ref().failed {
                        GunzipError::File(e)
                    } else if e.kind() == io::ErrorKind::UnexpectedEof {
                        GunzipError::Truncated
                    } else {
                        GunzipError::Corrupt(e)
                    };
                    if len > 0 {
                        let compressed = decoder.get_ref().get_ref().bytes;
                        let _ = out.send(Message::Data { buf, len, compressed });
                    }
                    let _ = out.send(Message::Failed(error));
                    return;
                }
            }
        }
        let compressed = decoder.get_ref().get_ref().bytes;
        if len > 0 && out.send(Message::Data { buf, len, compressed }).is_err() {
            return; // The reader stopped early.
        }
        if end {
            let _ = out.send(Message::End { compressed });
            return;
        }
    }
}

/// The inflating thread's ends of the two channels: filled buffers out, empty buffers back.
pub(super) struct InflaterEnds {
    pub data: SyncSender<Message>,
    pub free: Receiver<Vec<u8>>,
}

/// The reader's ends of the two channels.
pub(super) struct ReaderEnds {
    pub data: Receiver<Message>,
    pub free: Sender<Vec<u8>>,
}

/// The channels between the inflating thread and the reader.
pub(super) fn channels() -> (InflaterEnds, ReaderEnds) {
    let (data_tx, data_rx) = std::sync::mpsc::sync_channel(IN_FLIGHT);
    let (free_tx, free_rx) = std::sync::mpsc::channel();
    (InflaterEnds { data: data_tx, free: free_rx }, ReaderEnds { data: data_rx, free: free_tx })
}

/// The parser's side: decompressed bytes as a [`Read`]; a failure is kept for [`GunzipReader::take_error`].
pub(super) struct GunzipReader<'p> {
    data: Receiver<Message>,
    free: Sender<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    done: bool,
    error: Option<GunzipError>,
    reported: u64,
    progress: &'p dyn Progress,
}

impl<'p> GunzipReader<'p> {
    /// The reader over the channels' receiving ends.
    pub fn new(ends: ReaderEnds, progress: &'p dyn Progress) -> GunzipReader<'p> {
        let ReaderEnds { data, free } = ends;
        GunzipReader {
            data,
            free,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            done: false,
            error: None,
            reported: 0,
            progress,
        }
    }

    fn report(&mut self, compressed: u64) {
        self.progress.advance(compressed.saturating_sub(self.reported));
        self.reported = self.reported.max(compressed);
    }

    /// Why reading stopped with an error, once.
    pub fn take_error(&mut self) -> Option<GunzipError> {
        self.error.take()
    }
}

impl Read for GunzipReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if !self.buf.is_empty() {
                let _ = self.free.send(std::mem::take(&mut self.buf));
            }
            let message = self.data.recv().unwrap_or(Message::Failed(GunzipError::Lost));
            match message {
                Message::Data { buf, len, compressed } => {
                    self.report(compressed);
                    self.buf = buf;
                    self.pos = 0;
                    self.len = len;
                }
                Message::End { compressed } => {
                    self.report(compressed);
                    self.done = true;
                }
                Message::Failed(error) => {
                    self.done = true;
                    self.error = Some(error);
                    return Err(io::Error::other("the gzip stream failed"));
                }
            }
        }
    }
}
