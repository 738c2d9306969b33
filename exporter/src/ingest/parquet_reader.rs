//! The Parquet reader: the mapped columns are read as Arrow arrays (types from the Parquet
//! schema alone, so no dictionary or view types from embedded Arrow metadata) and each row is
//! checked like a CSV row, with its 1-based row number as its place.
//!
//! Accepted types: ids and the integer fields any signed or unsigned integer, or UTF-8 text
//! parsed as in CSV; the time a timestamp of any unit (with a time zone: the instant; without:
//! read as UTC; a fraction of a second is dropped), a date, or text; the amount Float64, Float32,
//! an integer or text; the fraud label also Boolean. Any other type is refused up front.

use super::columns::{self, Fields};
use super::quarantine::Rejections;
use super::rows::{self, CacheKey, Entity, EntityCache, Row, TableBuilder};
use super::{IngestError, IngestOptions, Ingested, Place, RowProblem};
use crate::{FileFormat, Progress};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, BooleanArray, Date32Array, Date64Array, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray, UInt8Array,
    UInt16Array, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;
use std::fs::File;
use std::path::Path;

/// Rows per Arrow batch.
const BATCH_ROWS: usize = 1 << 16;
/// Decoded batches waiting to be checked.
const BATCHES_IN_FLIGHT: usize = 2;

/// What a column's Arrow type can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Integer,
    Float,
    Bool,
    Text,
    Time,
}

fn kind(data_type: &DataType) -> Option<Kind> {
    use DataType::*;
    Some(match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Kind::Integer,
        Float32 | Float64 => Kind::Float,
        Boolean => Kind::Bool,
        Utf8 | LargeUtf8 | Utf8View => Kind::Text,
        Timestamp(..) | Date32 | Date64 => Kind::Time,
        _ => return None,
    })
}

/// The kinds each field accepts, and how an error names them.
fn accepted(field: &str) -> (&'static [Kind], &'static str) {
    match field {
        "time" => (&[Kind::Time, Kind::Text], "a timestamp, date or string column"),
        "amount" => (&[Kind::Float, Kind::Integer, Kind::Text], "a floating-point, integer or string column"),
        "fraud" => (&[Kind::Integer, Kind::Bool, Kind::Text], "an integer, boolean or string column"),
        _ => (&[Kind::Integer, Kind::Text], "an integer or string column"),
    }
}

/// Reads a `.parquet` file.
pub(super) fn read(
    path: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<Ingested, IngestError> {
    let parquet_error =
        |e: &dyn std::fmt::Display| IngestError::Parquet { path: path.to_path_buf(), message: e.to_string() };
    let file = File::open(path).map_err(|source| IngestError::Io { path: path.to_path_buf(), source })?;
    let reader_options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, reader_options)
        .map_err(|e| parquet_error(&e))?;
    let schema = builder.schema().clone();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let resolved = columns::resolve(path, &header, &options.columns)?;
    for (field, &i) in resolved.index.present() {
        let data_type = schema.field(i).data_type();
        let (kinds, expected) = accepted(field);
        if !kind(data_type).is_some_and(|k| kinds.contains(&k)) {
            return Err(IngestError::UnsupportedType {
                path: path.to_path_buf(),
                column: header[i].clone(),
                field,
                found: data_type.to_string(),
                expected,
            });
        }
    }
    // Projected columns keep the file's order: a field's batch column is its rank among them.
    let mut projected: Vec<usize> = resolved.index.present().into_iter().map(|(_, &i)| i).collect();
    projected.sort_unstable();
    projected.dedup();
    let rank = |i: usize| projected.iter().position(|&p| p == i).unwrap_or_default();
    let ix = &resolved.index;
    let batch_index = Fields {
        id: rank(ix.id),
        time: rank(ix.time),
        customer: rank(ix.customer),
        terminal: rank(ix.terminal),
        amount: rank(ix.amount),
        fraud: ix.fraud.map(rank),
        scenario: ix.scenario.map(rank),
        seconds: ix.seconds.map(rank),
        days: ix.days.map(rank),
    };

    let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mask = ProjectionMask::roots(builder.parquet_schema(), projected.iter().copied());
    let batches =
        builder.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(|e| parquet_error(&e))?;

    progress.start(&format!("reading {}", path.display()), total_rows);
    let quarantine_header: Vec<&[u8]> =
        resolved.names.present().into_iter().map(|(_, name)| name.as_bytes()).collect();
    let mut rejections = Rejections::open(path, &options.on_error, "row", quarantine_header)?;
    let mut table = TableBuilder::new(&resolved.names, options.time_order, Place::Row);
    table.reserve(usize::try_from(total_rows).unwrap_or(0).min(1 << 28));
    let mut rows_read = 0u64;
    let mut customers = EntityCache::default();
    let mut terminals = EntityCache::default();
    let mut texts = [IntText::default(), IntText::default()];
    // Decoding (decompression included) runs on a second thread, checking on this one.
    let result = std::thread::scope(|scope| -> Result<(), IngestError> {
        let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        scope.spawn(move || {
            for batch in batches {
                if batch_tx.send(batch).is_err() {
                    return; // The checking side stopped early.
                }
            }
        });
        for batch in batch_rx {
            let batch = batch.map_err(|e| parquet_error(&e))?;
            let columns = BatchColumns::new(&batch, &batch_index);
            let plain = Plain::new(&columns);
            for i in 0..batch.num_rows() {
                rows_read += 1;
                let caches = [&customers, &terminals];
                let parsed = match &plain {
                    Some(plain) => check_row(plain, i, &resolved.names, caches, &mut texts),
                    None => check_row(&columns, i, &resolved.names, caches, &mut texts),
                };
                let checked = parsed.and_then(|(row, [new_customer, new_terminal])| {
                    let (customer, terminal) = table.push(rows_read, &row)?;
                    customers.learn(new_customer, customer);
                    terminals.learn(new_terminal, terminal);
                    Ok(())
                });
                if let Err(problem) = checked {
                    let texts = columns.texts(i);
                    rejections.reject(Place::Row(rows_read), problem, texts.iter().map(String::as_bytes))?;
                }
            }
            progress.advance(batch.num_rows() as u64);
        }
        Ok(())
    });
    progress.finish();
    result?;
    Ingested::finish(table, rejections, FileFormat::Parquet, rows_read, resolved.ignored)
}

/// One column of a batch, downcast once per batch.
enum Column<'a> {
    I8(&'a Int8Array),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    U8(&'a UInt8Array),
    U16(&'a UInt16Array),
    U32(&'a UInt32Array),
    U64(&'a UInt64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
    /// Any timestamp unit: the array's nulls, its `i64` values and the values per second.
    Timestamp(&'a dyn Array, &'a [i64], i64),
    Date32(&'a Date32Array),
    Date64(&'a Date64Array),
    /// A type no field accepts (refused before reading).
    Other,
}

/// One value.
#[derive(Clone, Copy, Debug)]
enum Cell<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Text(&'a str),
    /// Seconds since the epoch (sub-second parts are dropped, rounding down).
    Time(i64),
}

impl<'a> Column<'a> {
    fn new(array: &'a dyn Array) -> Column<'a> {
        let a = array;
        let timestamp = |values: &'a [i64], per_second: i64| Column::Timestamp(a, values, per_second);
        match a.data_type() {
            DataType::Int8 => a.as_primitive_opt::<Int8Type>().map(Column::I8),
            DataType::Int16 => a.as_primitive_opt::<Int16Type>().map(Column::I16),
            DataType::Int32 => a.as_primitive_opt::<Int32Type>().map(Column::I32),
            DataType::Int64 => a.as_primitive_opt::<Int64Type>().map(Column::I64),
            DataType::UInt8 => a.as_primitive_opt::<UInt8Type>().map(Column::U8),
            DataType::UInt16 => a.as_primitive_opt::<UInt16Type>().map(Column::U16),
            DataType::UInt32 => a.as_primitive_opt::<UInt32Type>().map(Column::U32),
            DataType::UInt64 => a.as_primitive_opt::<UInt64Type>().map(Column::U64),
            DataType::Float32 => a.as_primitive_opt::<Float32Type>().map(Column::F32),
            DataType::Float64 => a.as_primitive_opt::<Float64Type>().map(Column::F64),
            DataType::Boolean => a.as_boolean_opt().map(Column::Bool),
            DataType::Utf8 => a.as_string_opt::<i32>().map(Column::Utf8),
            DataType::LargeUtf8 => a.as_string_opt::<i64>().map(Column::LargeUtf8),
            DataType::Utf8View => a.as_string_view_opt().map(Column::Utf8View),
            DataType::Timestamp(TimeUnit::Second, _) => {
                a.as_primitive_opt::<TimestampSecondType>().map(|p| timestamp(p.values(), 1))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                a.as_primitive_opt::<TimestampMillisecondType>().map(|p| timestamp(p.values(), 1_000))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                a.as_primitive_opt::<TimestampMicrosecondType>().map(|p| timestamp(p.values(), 1_000_000))
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                a.as_primitive_opt::<TimestampNanosecondType>().map(|p| timestamp(p.values(), 1_000_000_000))
            }
            DataType::Date32 => a.as_primitive_opt::<Date32Type>().map(Column::Date32),
            DataType::Date64 => a.as_primitive_opt::<Date64Type>().map(Column::Date64),
            _ => None,
        }
        .unwrap_or(Column::Other)
    }

    /// Row `i`'s value; `i` is below the batch's row count.
    #[inline]
    fn get(&self, i: usize) -> Cell<'a> {
        macro_rules! value {
            ($a:expr, $f:expr) => {
                if $a.is_null(i) { Cell::Null } else { $f($a.value(i)) }
            };
        }
        let int = Cell::Int;
        match *self {
            Column::I8(a) => value!(a, |v| int(i64::from(v))),
            Column::I16(a) => value!(a, |v| int(i64::from(v))),
            Column::I32(a) => value!(a, |v| int(i64::from(v))),
            Column::I64(a) => value!(a, int),
            Column::U8(a) => value!(a, |v| int(i64::from(v))),
            Column::U16(a) => value!(a, |v| int(i64::from(v))),
            Column::U32(a) => value!(a, |v| int(i64::from(v))),
            Column::U64(a) => value!(a, Cell::UInt),
            Column::F32(a) => value!(a, |v| Cell::Float(f64::from(v))),
            Column::F64(a) => value!(a, Cell::Float),
            Column::Bool(a) => value!(a, Cell::Bool),
            Column::Utf8(a) => value!(a, Cell::Text),
            Column::LargeUtf8(a) => value!(a, Cell::Text),
            Column::Utf8View(a) => value!(a, Cell::Text),
            Column::Timestamp(a, values, per_second) => {
                if a.is_null(i) {
                    Cell::Null
                } else {
                    Cell::Time(values[i].div_euclid(per_second))
                }
            }
            Column::Date32(a) => value!(a, |v| Cell::Time(i64::from(v) * SECONDS_PER_DAY)),
            Column::Date64(a) => value!(a, |v: i64| Cell::Time(v.div_euclid(1_000))),
            Column::Other => Cell::Null,
        }
    }
}

/// The cells of one batch, field by field.
trait Cells<'a> {
    fn id(&self, i: usize) -> Cell<'a>;
    fn time(&self, i: usize) -> Cell<'a>;
    fn customer(&self, i: usize) -> Cell<'a>;
    fn terminal(&self, i: usize) -> Cell<'a>;
    fn amount(&self, i: usize) -> Cell<'a>;
    fn fraud(&self, i: usize) -> Option<Cell<'a>>;
    fn scenario(&self, i: usize) -> Option<Cell<'a>>;
    fn seconds(&self, i: usize) -> Option<Cell<'a>>;
    fn days(&self, i: usize) -> Option<Cell<'a>>;
}

/// Row `i`, parsed and checked on its own. Integer entity ids found in the caches come back as
/// indices; new ones as text rendered in `texts`, with their keys to learn once accepted.
#[inline]
fn check_row<'a: 'b, 'b>(
    cells: &impl Cells<'a>,
    i: usize,
    names: &Fields<String>,
    caches: [&EntityCache; 2],
    texts: &'b mut [IntText; 2],
) -> Result<(Row<'b>, [Option<CacheKey>; 2]), RowProblem> {
    fn name(n: &Option<String>) -> &str {
        n.as_deref().unwrap_or_default()
    }
    let [customer_text, terminal_text] = texts;
    let id = id(&names.id, cells.id(i))?;
    let time = time(&names.time, cells.time(i))?;
    let (customer, new_customer) = entity(caches[0], &names.customer, cells.customer(i), customer_text)?;
    let (terminal, new_terminal) = entity(caches[1], &names.terminal, cells.terminal(i), terminal_text)?;
    let row = Row {
        id,
        time,
        customer,
        terminal,
        amount: amount(&names.amount, cells.amount(i))?,
        fraud: cells.fraud(i).map(|cell| label(name(&names.fraud), cell)).transpose()?.unwrap_or(0),
        scenario: cells
            .scenario(i)
            .map(|cell| scenario(name(&names.scenario), cell))
            .transpose()?
            .unwrap_or(0),
        seconds: cells.seconds(i).map(|cell| integer(name(&names.seconds), cell)).transpose()?,
        days: cells.days(i).map(|cell| integer(name(&names.days), cell)).transpose()?,
    };
    Ok((row, [new_customer, new_terminal]))
}

/// The mapped columns of one batch, of any accepted type.
struct BatchColumns<'a> {
    columns: Fields<Column<'a>>,
}

impl<'a> BatchColumns<'a> {
    fn new(batch: &'a RecordBatch, index: &Fields<usize>) -> BatchColumns<'a> {
        let column = |i: usize| batch.columns().get(i).map_or(Column::Other, |a| Column::new(a.as_ref()));
        BatchColumns {
            columns: Fields {
                id: column(index.id),
                time: column(index.time),
                customer: column(index.customer),
                terminal: column(index.terminal),
                amount: column(index.amount),
                fraud: index.fraud.map(column),
                scenario: index.scenario.map(column),
                seconds: index.seconds.map(column),
                days: index.days.map(column),
            },
        }
    }

    /// Row `i`'s mapped values as text, for the quarantine file.
    fn texts(&self, i: usize) -> Vec<String> {
        self.columns.present().into_iter().map(|(_, col)| text(col.get(i))).collect()
    }
}

impl<'a> Cells<'a> for BatchColumns<'a> {
    fn id(&self, i: usize) -> Cell<'a> {
        self.columns.id.get(i)
    }
    fn time(&self, i: usize) -> Cell<'a> {
        self.columns.time.get(i)
    }
    fn customer(&self, i: usize) -> Cell<'a> {
        self.columns.customer.get(i)
    }
    fn terminal(&self, i: usize) -> Cell<'a> {
        self.columns.terminal.get(i)
    }
    fn amount(&self, i: usize) -> Cell<'a> {
        self.columns.amount.get(i)
    }
    fn fraud(&self, i: usize) -> Option<Cell<'a>> {
        self.columns.fraud.as_ref().map(|c| c.get(i))
    }
    fn scenario(&self, i: usize) -> Option<Cell<'a>> {
        self.columns.scenario.as_ref().map(|c| c.get(i))
    }
    fn seconds(&self, i: usize) -> Option<Cell<'a>> {
        self.columns.seconds.as_ref().map(|c| c.get(i))
    }
    fn days(&self, i: usize) -> Option<Cell<'a>> {
        self.columns.days.as_ref().map(|c| c.get(i))
    }
}

/// The common layout (this crate's writer, pandas): Int64 ids and integer fields, a timestamp,
/// Float64 amounts, no nulls. Read straight from the value slices, with no per-cell type switch.
struct Plain<'a> {
    id: &'a [i64],
    time: &'a [i64],
    per_second: i64,
    customer: &'a [i64],
    terminal: &'a [i64],
    amount: &'a [f64],
    fraud: Option<&'a [i64]>,
    scenario: Option<&'a [i64]>,
    seconds: Option<&'a [i64]>,
    days: Option<&'a [i64]>,
}

impl<'a> Plain<'a> {
    /// The batch's value slices, when its columns have the common layout.
    fn new(columns: &BatchColumns<'a>) -> Option<Plain<'a>> {
        fn int<'a>(column: &Column<'a>) -> Option<&'a [i64]> {
            match column {
                Column::I64(a) if a.null_count() == 0 => Some(a.values()),
                _ => None,
            }
        }
        fn optional<'a>(column: &Option<Column<'a>>) -> Option<Option<&'a [i64]>> {
            match column {
                None => Some(None),
                Some(c) => int(c).map(Some),
            }
        }
        let c = &columns.columns;
        let (time, per_second) = match c.time {
            Column::Timestamp(a, values, per_second) if a.null_count() == 0 => (values, per_second),
            _ => return None,
        };
        let amount = match c.amount {
            Column::F64(a) if a.null_count() == 0 => a.values(),
            _ => return None,
        };
        Some(Plain {
            id: int(&c.id)?,
            time,
            per_second,
            customer: int(&c.customer)?,
            terminal: int(&c.terminal)?,
            amount,
            fraud: optional(&c.fraud)?,
            scenario: optional(&c.scenario)?,
            seconds: optional(&c.seconds)?,
            days: optional(&c.days)?,
        })
    }
}

impl<'a> Cells<'a> for Plain<'a> {
    #[inline]
    fn id(&self, i: usize) -> Cell<'a> {
        Cell::Int(self.id[i])
    }
    #[inline]
    fn time(&self, i: usize) -> Cell<'a> {
        Cell::Time(self.time[i].div_euclid(self.per_second))
    }
    #[inline]
    fn customer(&self, i: usize) -> Cell<'a> {
        Cell::Int(self.customer[i])
    }
    #[inline]
    fn terminal(&self, i: usize) -> Cell<'a> {
        Cell::Int(self.terminal[i])
    }
    #[inline]
    fn amount(&self, i: usize) -> Cell<'a> {
        Cell::Float(self.amount[i])
    }
    #[inline]
    fn fraud(&self, i: usize) -> Option<Cell<'a>> {
        self.fraud.map(|v| Cell::Int(v[i]))
    }
    #[inline]
    fn scenario(&self, i: usize) -> Option<Cell<'a>> {
        self.scenario.map(|v| Cell::Int(v[i]))
    }
    #[inline]
    fn seconds(&self, i: usize) -> Option<Cell<'a>> {
        self.seconds.map(|v| Cell::Int(v[i]))
    }
    #[inline]
    fn days(&self, i: usize) -> Option<Cell<'a>> {
        self.days.map(|v| Cell::Int(v[i]))
    }
}

fn text(cell: Cell<'_>) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Int(v) => v.to_string(),
        Cell::UInt(v) => v.to_string(),
        Cell::Float(v) => v.to_string(),
        Cell::Bool(v) => u8::from(v).to_string(),
        Cell::Text(s) => s.to_string(),
        Cell::Time(s) => Timestamp(s).to_string(),
    }
}

fn null(column: &str) -> RowProblem {
    RowProblem::Null { column: column.into() }
}

fn id(column: &str, cell: Cell<'_>) -> Result<u64, RowProblem> {
    match cell {
        Cell::Int(v) => {
            u64::try_from(v).map_err(|_| RowProblem::NotAnId { column: column.into(), text: text(cell) })
        }
        Cell::UInt(v) => Ok(v),
        Cell::Text(s) => rows::parse_id(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => Err(RowProblem::NotAnId { column: column.into(), text: text(cell) }),
    }
}

fn time(column: &str, cell: Cell<'_>) -> Result<Timestamp, RowProblem> {
    match cell {
        Cell::Time(s) => Ok(Timestamp(s)),
        Cell::Text(s) => rows::parse_time(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => rows::parse_time(column, text(cell).as_bytes()),
    }
}

fn amount(column: &str, cell: Cell<'_>) -> Result<f64, RowProblem> {
    match cell {
        Cell::Float(v) => rows::check_amount(column, v, || v.to_string()),
        Cell::Int(v) => rows::check_amount(column, v as f64, || v.to_string()),
        Cell::UInt(v) => rows::check_amount(column, v as f64, || v.to_string()),
        Cell::Text(s) => rows::parse_amount(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => Err(RowProblem::NotANumber { column: column.into(), text: text(cell) }),
    }
}

fn label(column: &str, cell: Cell<'_>) -> Result<u8, RowProblem> {
    match cell {
        Cell::Int(v) => rows::check_label(column, i128::from(v)),
        Cell::UInt(v) => rows::check_label(column, i128::from(v)),
        Cell::Bool(v) => Ok(u8::from(v)),
        Cell::Text(s) => rows::parse_label(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => Err(RowProblem::NotALabel { column: column.into(), text: text(cell) }),
    }
}

fn scenario(column: &str, cell: Cell<'_>) -> Result<u8, RowProblem> {
    match cell {
        Cell::Int(v) => rows::check_scenario(column, i128::from(v)),
        Cell::UInt(v) => rows::check_scenario(column, i128::from(v)),
        Cell::Text(s) => rows::parse_scenario(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => Err(RowProblem::NotAScenario { column: column.into(), text: text(cell) }),
    }
}

fn integer(column: &str, cell: Cell<'_>) -> Result<i64, RowProblem> {
    match cell {
        Cell::Int(v) => Ok(v),
        Cell::UInt(v) => {
            i64::try_from(v).map_err(|_| RowProblem::OutOfRange { column: column.into(), text: text(cell) })
        }
        Cell::Text(s) => rows::parse_i64(column, s.as_bytes()),
        Cell::Null => Err(null(column)),
        _ => Err(RowProblem::NotAnInteger { column: column.into(), text: text(cell) }),
    }
}

/// The entity of one id cell: a cached index, or text to intern (rendered in `text` for a new
/// integer id), with the key to learn it under once its row is accepted.
fn entity<'b>(
    cache: &EntityCache,
    column: &str,
    cell: Cell<'b>,
    text: &'b mut IntText,
) -> Result<(Entity<'b>, Option<CacheKey>), RowProblem> {
    let (key, negative, magnitude) = match cell {
        Cell::Text(s) => return Ok(cache.text(rows::parse_text(column, s.as_bytes())?)),
        Cell::Int(v) => (Some(CacheKey::Int(v)), v < 0, v.unsigned_abs()),
        Cell::UInt(v) => (i64::try_from(v).ok().map(CacheKey::Int), false, v),
        _ => return Err(null(column)),
    };
    if let Some(index) = key.and_then(|k| cache.get(k)) {
        return Ok((Entity::Index(index), None));
    }
    Ok((Entity::Text(text.format(negative, magnitude)), key))
}

/// A stack buffer that renders an integer id as the text it is interned under.
#[derive(Default)]
struct IntText([u8; 21]);

impl IntText {
    fn format(&mut self, negative: bool, mut n: u64) -> &str {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if negative {
            at -= 1;
            self.0[at] = b'-';
        }
        // Only ASCII digits and '-' were written.
        std::str::from_utf8(&self.0[at..]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ids_render_as_their_decimal_text() {
        let mut buf = IntText::default();
        assert_eq!(buf.format(false, 0), "0");
        assert_eq!(buf.format(true, 42), "-42");
        assert_eq!(buf.format(false, u64::MAX), "18446744073709551615");
        assert_eq!(buf.format(true, i64::MIN.unsigned_abs()), i64::MIN.to_string());
    }

    #[test]
    fn integer_ids_are_cached_by_value() {
        let mut cache = EntityCache::default();
        let mut text = IntText::default();
        let (e, key) = entity(&cache, "C", Cell::Int(-7), &mut text).unwrap();
        assert!(matches!((e, key), (Entity::Text("-7"), Some(CacheKey::Int(-7)))));
        cache.learn(key, 3);
        assert!(matches!(entity(&cache, "C", Cell::Int(-7), &mut text), Ok((Entity::Index(3), None))));
        let (e, key) = entity(&cache, "C", Cell::UInt(u64::MAX), &mut text).unwrap();
        assert!(matches!((e, key), (Entity::Text("18446744073709551615"), None)));
        assert!(matches!(entity(&cache, "C", Cell::Null, &mut text), Err(RowProblem::Null { .. })));
    }
}
