//! Writing transactions in the handbook's column layout, as CSV, gzip CSV or Parquet (by the
//! path's extension). Every value reads back exactly: amounts are written in the shortest text
//! that parses to the same `f64`, entity ids as their original text.
//!
//! Parquet columns: TRANSACTION_ID Int64 (UInt64 when an id exceeds `i64::MAX`), TX_DATETIME a
//! millisecond timestamp without time zone, CUSTOMER_ID and TERMINAL_ID Int64 when every id is
//! the canonical text of an `i64` (as in the handbook) and UTF-8 strings otherwise, TX_AMOUNT
//! Float64, the other four Int64 (pandas' types for the handbook file); zstd, row groups of 2^20 rows.
//! A file is written under a temporary name next to `path` and renamed when complete.

use crate::{EntityIds, FileFormat, Transactions, format::UnknownFormat};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use flate2::Compression;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::properties::WriterProperties;
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The handbook's columns, in its order: the header every written file has.
pub const HANDBOOK_COLUMNS: [&str; 9] = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
];

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1 << 20;
/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 1 << 16;
/// Bytes of CSV text formatted before they are handed on.
const CSV_CHUNK: usize = 1 << 20;
/// The gzip level: on the handbook file, level 3 is 0.5 % larger than the default 6 and twice as fast.
const GZIP_LEVEL: u32 = 3;

/// Why a table could not be written. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file name has no known extension.
    #[error(transparent)]
    UnknownFormat(#[from] UnknownFormat),
    /// Writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The Parquet writer failed.
    #[error("{}: cannot write Parquet: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The writer's error.
        message: String,
    },
    /// A time too far from 1970 for a millisecond Parquet timestamp.
    #[error("{}: transaction {index}: TX_DATETIME {time} is out of the range of a Parquet timestamp", path.display())]
    TimeOutOfRange {
        /// The file.
        path: PathBuf,
        /// Index of the transaction in the table.
        index: usize,
        /// Its time.
        time: Timestamp,
    },
    /// The table's columns disagree (a table built by hand with columns of unequal length, or an
    /// entity index with no id).
    #[error("{}: cannot write an inconsistent table: {reason}", path.display())]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Extra f64 columns written after the handbook's (features, scores), row-major: row `i` holds
/// `names.len()` values starting at `values[i * names.len()]`.
#[derive(Clone, Copy, Debug)]
pub struct ExtraColumns<'a> {
    /// Column names.
    pub names: &'a [String],
    /// Values, row-major, one row per transaction.
    pub values: &'a [f64],
}

impl ExtraColumns<'_> {
    const NONE: ExtraColumns<'static> = ExtraColumns { names: &[], values: &[] };

    fn value(&self, row: usize, column: usize) -> f64 {
        self.values[row * self.names.len() + column]
    }
}

/// Writes `tx` to `path` in the handbook's layout; the format follows the extension.
pub fn write_transactions(path: &Path, tx: &Transactions) -> Result<(), WriteError> {
    write_transactions_with(path, tx, ExtraColumns::NONE)
}

/// Writes `tx` in the handbook's layout followed by `extra` columns (e.g. features, as in the
/// handbook's golden feature file); the format follows the extension.
pub fn write_transactions_with(
    path: &Path,
    tx: &Transactions,
    extra: ExtraColumns<'_>,
) -> Result<(), WriteError> {
    let format = FileFormat::from_path(path)?;
    check_consistent(tx).map_err(|reason| WriteError::Inconsistent { path: path.to_path_buf(), reason })?;
    if extra.values.len() != tx.len() * extra.names.len() {
        let reason = format!(
            "{} extra values for {} rows of {} columns",
            extra.values.len(),
            tx.len(),
            extra.names.len()
        );
        return Err(WriteError::Inconsistent { path: path.to_path_buf(), reason });
    }
    let partial = partial_path(path);
    let io_error = |source| WriteError::Io { path: path.to_path_buf(), source };
    let result = File::create(&partial).map_err(io_error).and_then(|file| match format {
        FileFormat::Csv => write_csv(tx, extra, file).map_err(io_error),
        FileFormat::CsvGz => write_csv_gz(tx, extra, file).map_err(io_error),
        FileFormat::Parquet => write_parquet(path, tx, extra, file),
    });
    let result = result.and_then(|()| std::fs::rename(&partial, path).map_err(io_error));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `dir/name.partial` for `dir/name`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn check_consistent(tx: &Transactions) -> Result<(), String> {
    let n = tx.transaction_id.len();
    let lengths = [
        ("TX_DATETIME", tx.time.len()),
        ("CUSTOMER_ID", tx.customer.len()),
        ("TERMINAL_ID", tx.terminal.len()),
        ("TX_AMOUNT", tx.amount.len()),
        ("TX_FRAUD", tx.fraud.len()),
        ("TX_FRAUD_SCENARIO", tx.scenario.len()),
    ];
    if let Some((column, len)) = lengths.iter().find(|(_, len)| *len != n) {
        return Err(format!("{column} has {len} values, TRANSACTION_ID has {n}"));
    }
    for (column, indices, ids) in
        [("CUSTOMER_ID", &tx.customer, &tx.customers), ("TERMINAL_ID", &tx.terminal, &tx.terminals)]
    {
        if let Some(&i) = indices.iter().find(|&&i| i as usize >= ids.len()) {
            return Err(format!("{column} index {i} is not below the {} ids", ids.len()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CSV

/// Formats the table as CSV text in chunks of about [`CSV_CHUNK`] bytes, handing each to `sink`.
fn format_csv(
    tx: &Transactions,
    extra: ExtraColumns<'_>,
    mut sink: impl FnMut(Vec<u8>) -> io::Result<Vec<u8>>,
) -> io::Result<()> {
    let customers = csv_texts(&tx.customers);
    let terminals = csv_texts(&tx.terminals);
    let mut buf = Vec::with_capacity(CSV_CHUNK + 4096);
    buf.extend_from_slice(HANDBOOK_COLUMNS.join(",").as_bytes());
    for name in extra.names {
        buf.push(b',');
        buf.extend_from_slice(name.as_bytes());
    }
    buf.push(b'\n');
    let mut dates = DateCache::default();
    for i in 0..tx.len() {
        put_u64(&mut buf, tx.transaction_id[i]);
        buf.push(b',');
        dates.put(&mut buf, tx.time[i]);
        buf.push(b',');
        buf.extend_from_slice(&customers[tx.customer[i] as usize]);
        buf.push(b',');
        buf.extend_from_slice(&terminals[tx.terminal[i] as usize]);
        buf.push(b',');
        // `{:?}` is the shortest text that reads back to the same f64, with ".0" on integers.
        write!(buf, "{:?}", tx.amount[i])?;
        buf.push(b',');
        let seconds = tx.time_seconds(i);
        put_i64(&mut buf, seconds);
        buf.push(b',');
        put_i64(&mut buf, seconds.div_euclid(SECONDS_PER_DAY));
        buf.push(b',');
        put_u64(&mut buf, u64::from(tx.fraud[i]));
        buf.push(b',');
        put_u64(&mut buf, u64::from(tx.scenario[i]));
        for c in 0..extra.names.len() {
            write!(buf, ",{:?}", extra.value(i, c))?;
        }
        buf.push(b'\n');
        if buf.len() >= CSV_CHUNK {
            buf = sink(buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        sink(buf)?;
    }
    Ok(())
}

/// Each id as a CSV field: quoted (quotes doubled) when it holds a comma, quote or line break.
fn csv_texts(ids: &EntityIds) -> Vec<Box<[u8]>> {
    (0..ids.len() as u32)
        .map(|i| {
            let id = ids.id(i);
            if id.contains([',', '"', '\n', '\r']) || id.trim() != id {
                format!("\"{}\"", id.replace('"', "\"\"")).into_bytes().into_boxed_slice()
            } else {
                id.as_bytes().into()
            }
        })
        .collect()
}

fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

fn put_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    put_u64(buf, v.unsigned_abs());
}

/// Formats `YYYY-MM-DD HH:MM:SS`, reusing the date text while the day stays the same.
#[derive(Default)]
struct DateCache {
    day: Option<i64>,
    date: [u8; 11],
}

impl DateCache {
    fn put(&mut self, buf: &mut Vec<u8>, t: Timestamp) {
        let day = t.0.div_euclid(SECONDS_PER_DAY);
        if self.day != Some(day) {
            let d = t.to_datetime();
            if !(0..=9999).contains(&d.year) {
                // Outside four-digit years the plain Display is as good as any.
                buf.extend_from_slice(t.to_string().as_bytes());
                return;
            }
            let y = d.year as u32;
            self.date = [
                b'0' + (y / 1000) as u8,
                b'0' + (y / 100 % 10) as u8,
                b'0' + (y / 10 % 10) as u8,
                b'0' + (y % 10) as u8,
                b'-',
                b'0' + d.month / 10,
                b'0' + d.month % 10,
                b'-',
                b'0' + d.day / 10,
                b'0' + d.day % 10,
                b' ',
            ];
            self.day = Some(day);
        }
        let s = t.0.rem_euclid(SECONDS_PER_DAY);
        let (h, m, s) = ((s / 3600) as u8, (s / 60 % 60) as u8, (s % 60) as u8);
        buf.extend_from_slice(&self.date);
        buf.extend_from_slice(&[b'0' + h / 10, b'0' + h % 10, b':', b'0' + m / 10, b'0' + m % 10, b':']);
        buf.extend_from_slice(&[b'0' + s / 10, b'0' + s % 10]);
    }
}

fn write_csv(tx: &Transactions, extra: ExtraColumns<'_>, mut file: File) -> io::Result<()> {
    format_csv(tx, extra, |buf| {
        file.write_all(&buf)?;
        Ok(buf)
    })?;
    file.sync_all()
}

/// Gzip CSV: this thread formats, a second thread compresses and writes.
fn write_csv_gz(tx: &Transactions, extra: ExtraColumns<'_>, file: File) -> io::Result<()> {
    let (text_tx, text_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let compressor = scope.spawn(move || -> io::Result<()> {
            let mut gz =
                GzEncoder::new(io::BufWriter::with_capacity(1 << 18, file), Compression::new(GZIP_LEVEL));
            for buf in text_rx {
                gz.write_all(&buf)?;
                let _ = free_tx.send(buf);
            }
            gz.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()
        });
        let formatted = format_csv(tx, extra, |buf| {
            text_tx.send(buf).map_err(|_| io::Error::other("the gzip thread stopped"))?;
            Ok(free_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(CSV_CHUNK + 4096)))
        });
        drop(text_tx);
        let compressed =
            compressor.join().unwrap_or_else(|_| Err(io::Error::other("the gzip thread panicked")));
        // The compressor's error explains a formatting-side "thread stopped".
        compressed.and(formatted)
    })
}

// ---------------------------------------------------------------------------------------------
// Parquet

/// An entity id column: Int64 when every id is the canonical text of an i64, else UTF-8.
enum IdColumn {
    Int(Vec<i64>),
    Text,
}

impl IdColumn {
    fn of(ids: &EntityIds) -> IdColumn {
        let mut values = Vec::with_capacity(ids.len());
        for i in 0..ids.len() as u32 {
            let text = ids.id(i);
            match text.parse::<i64>() {
                Ok(v) if v.to_string() == text => values.push(v),
                _ => return IdColumn::Text,
            }
        }
        IdColumn::Int(values)
    }

    fn data_type(&self) -> DataType {
        match self {
            IdColumn::Int(_) => DataType::Int64,
            IdColumn::Text => DataType::Utf8,
        }
    }

    fn array(&self, ids: &EntityIds, indices: &[u32]) -> ArrayRef {
        match self {
            IdColumn::Int(values) => {
                Arc::new(Int64Array::from_iter_values(indices.iter().map(|&i| values[i as usize])))
            }
            IdColumn::Text => Arc::new(StringArray::from_iter_values(indices.iter().map(|&i| ids.id(i)))),
        }
    }
}

fn write_parquet(
    path: &Path,
    tx: &Transactions,
    extra: ExtraColumns<'_>,
    file: File,
) -> Result<(), WriteError> {
    let parquet_error = |e: parquet::errors::ParquetError| WriteError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let signed_ids = tx.transaction_id.iter().all(|&id| i64::try_from(id).is_ok());
    let customers = IdColumn::of(&tx.customers);
    let terminals = IdColumn::of(&tx.terminals);
    let types = [
        if signed_ids { DataType::Int64 } else { DataType::UInt64 },
        DataType::Timestamp(TimeUnit::Millisecond, None),
        customers.data_type(),
        terminals.data_type(),
        DataType::Float64,
        DataType::Int64,
        DataType::Int64,
        DataType::Int64,
        DataType::Int64,
    ];
    let fields: Vec<Field> = HANDBOOK_COLUMNS
        .iter()
        .zip(types)
        .map(|(name, data_type)| Field::new(*name, data_type, false))
        .chain(extra.names.iter().map(|name| Field::new(name, DataType::Float64, false)))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let level = ZstdLevel::try_new(1).map_err(parquet_error)?;
    let properties = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet_error)?;
    let mut start = 0;
    while start < tx.len() {
        let end = (start + BATCH_ROWS).min(tx.len());
        let range = start..end;
        let ids = &tx.transaction_id[range.clone()];
        let id_array: ArrayRef = if signed_ids {
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|&id| id as i64)))
        } else {
            Arc::new(UInt64Array::from(ids.to_vec()))
        };
        let mut millis = Vec::with_capacity(end - start);
        for i in range.clone() {
            let t = tx.time[i];
            let ms = t.0.checked_mul(1000).ok_or_else(|| WriteError::TimeOutOfRange {
                path: path.to_path_buf(),
                index: i,
                time: t,
            })?;
            millis.push(ms);
        }
        let seconds: Vec<i64> = range.clone().map(|i| tx.time_seconds(i)).collect();
        let days: Vec<i64> = seconds.iter().map(|s| s.div_euclid(SECONDS_PER_DAY)).collect();
        let mut columns: Vec<ArrayRef> = vec![
            id_array,
            Arc::new(TimestampMillisecondArray::from(millis)),
            customers.array(&tx.customers, &tx.customer[range.clone()]),
            terminals.array(&tx.terminals, &tx.terminal[range.clone()]),
            Arc::new(Float64Array::from(tx.amount[range.clone()].to_vec())),
            Arc::new(Int64Array::from(seconds)),
            Arc::new(Int64Array::from(days)),
            Arc::new(Int64Array::from_iter_values(tx.fraud[range.clone()].iter().map(|&v| i64::from(v)))),
            Arc::new(Int64Array::from_iter_values(tx.scenario[range.clone()].iter().map(|&v| i64::from(v)))),
        ];
        for c in 0..extra.names.len() {
            columns.push(Arc::new(Float64Array::from_iter_values(range.clone().map(|i| extra.value(i, c)))));
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| WriteError::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
        writer.write(&batch).map_err(parquet_error)?;
        start = end;
    }
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all().map_err(|source| WriteError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_integers_format_like_the_handbook() {
        let mut buf = Vec::new();
        let mut dates = DateCache::default();
        dates.put(&mut buf, "2018-04-01 00:00:31".parse().unwrap());
        buf.push(b' ');
        dates.put(&mut buf, "2018-04-01 23:59:59".parse().unwrap());
        buf.push(b' ');
        put_i64(&mut buf, -1234);
        buf.push(b' ');
        put_u64(&mut buf, u64::MAX);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2018-04-01 00:00:31 2018-04-01 23:59:59 -1234 18446744073709551615"
        );
    }

    #[test]
    fn ids_that_need_it_are_quoted() {
        let mut ids = EntityIds::new();
        for id in ["17", "a,b", "say \"hi\"", " x"] {
            ids.intern(id);
        }
        let texts: Vec<String> =
            csv_texts(&ids).iter().map(|t| String::from_utf8(t.to_vec()).unwrap()).collect();
        assert_eq!(texts, ["17", "\"a,b\"", "\"say \"\"hi\"\"\"", "\" x\""]);
    }

    #[test]
    fn integer_id_columns_only_for_canonical_integers() {
        let mut ids = EntityIds::new();
        ids.intern("17");
        ids.intern("-3");
        assert!(matches!(IdColumn::of(&ids), IdColumn::Int(v) if v == [17, -3]));
        ids.intern("007");
        assert!(matches!(IdColumn::of(&ids), IdColumn::Text));
    }
}
