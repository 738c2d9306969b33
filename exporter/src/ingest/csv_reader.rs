//! The CSV and gzip CSV reader: the csv crate's `ByteRecord` fast path over the file, or over
//! the decompressed stream that [`gunzip`](super::gunzip) produces on a second thread.

use super::columns::{self, Fields};
use super::gunzip::{self, GunzipError, GunzipReader};
use super::quarantine::Rejections;
use super::rows::{self, CacheKey, EntityCache, Row, TableBuilder};
use super::{IngestError, IngestOptions, Ingested, Place, RowProblem};
use crate::{FileFormat, Progress};
use csv::ByteRecord;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a `.csv` or `.csv.gz` file.
pub(super) fn read(
    path: &Path,
    format: FileFormat,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<Ingested, IngestError> {
    let io_error = |source| IngestError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let size = metadata.len();
    progress.start(&format!("reading {}", path.display()), size);
    let result = if metadata.is_file() && size == 0 {
        Err(IngestError::Empty { path: path.to_path_buf() })
    } else if format == FileFormat::CsvGz {
        std::thread::scope(|scope| {
            let (inflater, reader) = gunzip::channels();
            scope.spawn(move || gunzip::inflate(file, inflater));
            // The reader (and with it the channel) is dropped before the scope joins the thread,
            // so an early return also stops the inflating thread.
            read_records(path, format, GunzipReader::new(reader, progress), options)
        })
    } else {
        read_records(path, format, PlainReader { file, progress }, options)
    };
    progress.finish();
    result
}

/// A byte stream that can say why it failed, with the file's name.
trait Source: Read {
    fn error(&mut self, path: &Path, source: io::Error) -> IngestError;
}

/// The plain file, reporting progress in bytes.
struct PlainReader<'p> {
    file: File,
    progress: &'p dyn Progress,
}

impl Read for PlainReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl Source for PlainReader<'_> {
    fn error(&mut self, path: &Path, source: io::Error) -> IngestError {
        IngestError::Io { path: path.to_path_buf(), source }
    }
}

impl Source for GunzipReader<'_> {
    fn error(&mut self, path: &Path, source: io::Error) -> IngestError {
        let path = path.to_path_buf();
        match self.take_error() {
            Some(GunzipError::Truncated) => IngestError::Truncated { path },
            Some(GunzipError::Corrupt(source)) => IngestError::Gzip { path, source },
            Some(GunzipError::File(source)) => IngestError::Io { path, source },
            Some(GunzipError::Lost) | None => IngestError::Io { path, source },
        }
    }
}

/// Reads one record; `Ok(false)` at the end of the data.
fn next_record<S: Source>(
    reader: &mut csv::Reader<S>,
    record: &mut ByteRecord,
    path: &Path,
) -> Result<bool, IngestError> {
    reader.read_byte_record(record).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(source) => reader.get_mut().error(path, source),
        other => IngestError::Io { path: path.to_path_buf(), source: io::Error::other(format!("{other:?}")) },
    })
}

fn read_records<S: Source>(
    path: &Path,
    format: FileFormat,
    source: S,
    options: &IngestOptions,
) -> Result<Ingested, IngestError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 18)
        .from_reader(source);
    let mut record = ByteRecord::new();
    if !next_record(&mut reader, &mut record, path)? {
        return Err(IngestError::Empty { path: path.to_path_buf() });
    }
    let mut header: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
    if let Some(first) = header.first_mut()
        && first.starts_with(UTF8_BOM)
    {
        first.drain(..UTF8_BOM.len());
    }
    let names: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
    let resolved = columns::resolve(path, &names, &options.columns)?;
    let mut rejections = Rejections::open(path, &options.on_error, "line", header.iter().map(Vec::as_slice))?;
    let mut table = TableBuilder::new(&resolved.names, options.time_order, Place::Line);
    let mut customers = EntityCache::default();
    let mut terminals = EntityCache::default();
    let mut rows_read = 0u64;
    while next_record(&mut reader, &mut record, path)? {
        rows_read += 1;
        let line = record.position().map_or(0, csv::Position::line);
        let caches = [&customers, &terminals];
        let checked = parse_row(&record, header.len(), &resolved.index, &resolved.names, caches).and_then(
            |(row, [new_customer, new_terminal])| {
                let (customer, terminal) = table.push(line, &row)?;
                customers.learn(new_customer, customer);
                terminals.learn(new_terminal, terminal);
                Ok(())
            },
        );
        if let Err(problem) = checked {
            rejections.reject(Place::Line(line), problem, record.iter())?;
        }
    }
    Ingested::finish(table, rejections, format, rows_read, resolved.ignored)
}

/// Parses and checks one record's fields on their own; entity ids found in the caches come back
/// as indices, new ones as text with the keys to learn them under.
fn parse_row<'r>(
    record: &'r ByteRecord,
    fields: usize,
    index: &Fields<usize>,
    names: &Fields<String>,
    caches: [&EntityCache; 2],
) -> Result<(Row<'r>, [Option<CacheKey>; 2]), RowProblem> {
    if record.len() != fields {
        return Err(RowProblem::FieldCount { expected: fields, found: record.len() });
    }
    // Every index is below `fields`, the record's length.
    let field = |i: usize| record.get(i).unwrap_or_default();
    fn name(n: &Option<String>) -> &str {
        n.as_deref().unwrap_or_default()
    }
    let id = rows::parse_id(&names.id, field(index.id))?;
    let time = rows::parse_time(&names.time, field(index.time))?;
    let (customer, new_customer) = caches[0].text(rows::parse_text(&names.customer, field(index.customer))?);
    let (terminal, new_terminal) = caches[1].text(rows::parse_text(&names.terminal, field(index.terminal))?);
    let row = Row {
        id,
        time,
        customer,
        terminal,
        amount: rows::parse_amount(&names.amount, field(index.amount))?,
        fraud: match index.fraud {
            Some(i) => rows::parse_label(name(&names.fraud), field(i))?,
            None => 0,
        },
        scenario: match index.scenario {
            Some(i) => rows::parse_scenario(name(&names.scenario), field(i))?,
            None => 0,
        },
        seconds: index.seconds.map(|i| rows::parse_i64(name(&names.seconds), field(i))).transpose()?,
        days: index.days.map(|i| rows::parse_i64(name(&names.days), field(i))).transpose()?,
    };
    Ok((row, [new_customer, new_terminal]))
}
