//! Validated reading of transaction files (CSV, gzip CSV, Parquet) into [`Transactions`].
//! This module owns the column mapping, the row checks and their exact error messages, and the
//! quarantine file that rejected rows go to; the readers themselves live in the submodules.
//!
//! ```no_run
//! use exporter::ingest::{read_transactions, IngestOptions};
//! let options = IngestOptions::default();
//! let data = read_transactions("handbook.csv.gz".as_ref(), &options, &exporter::NoProgress)?;
//! println!("{}", data.report);
//! # Ok::<(), exporter::ingest::IngestError>(())
//! ```

mod columns;
mod csv_reader;
mod gunzip;
mod parquet_reader;
mod quarantine;
mod rows;

use crate::{FileFormat, Progress, Transactions, format::UnknownFormat};
use scorer::Timestamp;
use scorer::time::TimestampError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Which column of the file holds each field. [`Default`] is the handbook's layout.
///
/// The two optional handbook columns TX_TIME_SECONDS and TX_TIME_DAYS are always looked up by
/// those names and checked against TX_DATETIME when present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMapping {
    /// Column of the transaction id (an unsigned 64-bit integer).
    pub transaction_id: String,
    /// Column of the date-time (`YYYY-MM-DD HH:MM:SS`, UTC).
    pub time: String,
    /// Column of the customer id (any non-empty text).
    pub customer_id: String,
    /// Column of the terminal id (any non-empty text).
    pub terminal_id: String,
    /// Column of the amount (a finite number, not negative).
    pub amount: String,
    /// Column of the fraud label (0 or 1); `None` when the file has no labels (all read as 0).
    pub fraud: Option<String>,
    /// Column of the fraud scenario (0..=3); `None` when the file has none (all read as 0).
    pub scenario: Option<String>,
}

impl Default for ColumnMapping {
    fn default() -> ColumnMapping {
        ColumnMapping {
            transaction_id: "TRANSACTION_ID".into(),
            time: "TX_DATETIME".into(),
            customer_id: "CUSTOMER_ID".into(),
            terminal_id: "TERMINAL_ID".into(),
            amount: "TX_AMOUNT".into(),
            fraud: Some("TX_FRAUD".into()),
            scenario: Some("TX_FRAUD_SCENARIO".into()),
        }
    }
}

impl ColumnMapping {
    /// The field names that [`ColumnMapping::set`] accepts, in the order of the handbook's columns.
    pub const FIELDS: [&'static str; 7] =
        ["transaction_id", "time", "customer_id", "terminal_id", "amount", "fraud", "scenario"];

    /// The fields a file may lack (`field=` with no column marks them absent).
    pub const OPTIONAL: [&'static str; 2] = ["fraud", "scenario"];

    /// Reads `field` from `column`; an empty `column` marks `fraud` or `scenario` absent.
    pub fn set(&mut self, field: &str, column: &str) -> Result<(), IngestError> {
        let optional = |column: &str| (!column.is_empty()).then(|| column.to_string());
        let required = |field: &'static str| {
            if column.is_empty() { Err(IngestError::RequiredField { field }) } else { Ok(column.to_string()) }
        };
        match field {
            "transaction_id" => self.transaction_id = required("transaction_id")?,
            "time" => self.time = required("time")?,
            "customer_id" => self.customer_id = required("customer_id")?,
            "terminal_id" => self.terminal_id = required("terminal_id")?,
            "amount" => self.amount = required("amount")?,
            "fraud" => self.fraud = optional(column),
            "scenario" => self.scenario = optional(column),
            _ => return Err(IngestError::UnknownField { field: field.to_string() }),
        }
        Ok(())
    }

    /// Applies one `field=column` assignment, the form of the CLI's `--column` flag.
    pub fn apply(&mut self, assignment: &str) -> Result<(), IngestError> {
        match assignment.split_once('=') {
            Some((field, column)) => self.set(field.trim(), column.trim()),
            None => Err(IngestError::BadAssignment { text: assignment.to_string() }),
        }
    }
}

/// What to do with a row that fails validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Stop at the first bad row with an error naming it.
    #[default]
    Fail,
    /// Write every bad row to this CSV file (`line`/`row`, `reason`, then the row's fields) and go on.
    Quarantine(PathBuf),
}

/// What to do when the rows are not in time order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeOrder {
    /// A row earlier than the previous accepted row is a bad row.
    #[default]
    Require,
    /// Accept any order and sort by (time, file order) at the end.
    Sort,
}

/// How [`read_transactions`] reads a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOptions {
    /// Which column holds each field.
    pub columns: ColumnMapping,
    /// Stop at the first bad row, or quarantine bad rows.
    pub on_error: OnError,
    /// Require time order, or sort.
    pub time_order: TimeOrder,
}

/// What [`read_transactions`] did: every row read is either accepted or rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestReport {
    /// The format the file was read as.
    pub format: FileFormat,
    /// Data rows read (the header excluded); always `accepted + rejected`.
    pub rows_read: u64,
    /// Rows that passed validation and are in the table.
    pub accepted: u64,
    /// Rows that failed validation (only non-zero with [`OnError::Quarantine`]).
    pub rejected: u64,
    /// The quarantine file, when [`OnError::Quarantine`] was asked for (written even when empty).
    pub quarantine: Option<PathBuf>,
    /// True when the rows were out of time order and were sorted ([`TimeOrder::Sort`]).
    pub sorted: bool,
    /// Columns of the file that no field reads.
    pub ignored_columns: Vec<String>,
}

impl Ingested {
    /// Closes a read, whatever the format: the quarantine file flushed, the table finished (and
    /// sorted if asked), the report filled in.
    fn finish(
        table: rows::TableBuilder<'_>,
        rejections: quarantine::Rejections,
        format: FileFormat,
        rows_read: u64,
        ignored_columns: Vec<String>,
    ) -> Result<Ingested, IngestError> {
        let rejected = rejections.count;
        let quarantine = rejections.finish()?;
        let (transactions, sorted) = table.finish();
        let accepted = transactions.len() as u64;
        let report =
            IngestReport { format, rows_read, accepted, rejected, quarantine, sorted, ignored_columns };
        Ok(Ingested { transactions, report })
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows_read == 0 {
            f.write_str("the file has a header but no rows")?;
        } else {
            write!(
                f,
                "{} rows read: {} accepted, {} rejected",
                self.rows_read, self.accepted, self.rejected
            )?;
        }
        if let Some(path) = &self.quarantine {
            write!(f, "; rejected rows in {}", path.display())?;
        }
        if self.sorted {
            f.write_str("; rows sorted by time")?;
        }
        if !self.ignored_columns.is_empty() {
            write!(f, "; ignored columns: {}", self.ignored_columns.join(", "))?;
        }
        Ok(())
    }
}

/// The table read and the report on reading it.
#[derive(Clone, Debug)]
pub struct Ingested {
    /// The accepted rows.
    pub transactions: Transactions,
    /// Counts and notes.
    pub report: IngestReport,
}

/// Where a bad row is: a physical line of a CSV file (the header is line 1) or a 1-based Parquet row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Line of a CSV file where the record starts, counting the header as line 1.
    Line(u64),
    /// Row of a Parquet file, counting from 1.
    Row(u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Why one row was rejected. `column` is the column's name in the file, `text` the value as found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// The row has another number of fields than the header.
    #[error("has {found} fields, the header has {expected}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// An empty field.
    #[error("{column} is empty")]
    Empty {
        /// Column name.
        column: String,
    },
    /// A null value (Parquet).
    #[error("{column} is null")]
    Null {
        /// Column name.
        column: String,
    },
    /// Bytes that are not UTF-8 where text is needed.
    #[error("{column} is not valid UTF-8")]
    NotUtf8 {
        /// Column name.
        column: String,
    },
    /// A transaction id that is not an unsigned 64-bit integer.
    #[error("{column} {} is not an unsigned 64-bit integer", Quoted(text))]
    NotAnId {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A TX_TIME_SECONDS or TX_TIME_DAYS value that is not an integer.
    #[error("{column} {} is not an integer", Quoted(text))]
    NotAnInteger {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// An amount that is not a number.
    #[error("{column} {} is not a number", Quoted(text))]
    NotANumber {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// An amount that is NaN or infinite.
    #[error("{column} {} is not a finite number", Quoted(text))]
    NotFinite {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A negative amount (a negative zero included).
    #[error("{column} {} is negative", Quoted(text))]
    Negative {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A date-time that [`Timestamp`]'s parser refuses.
    #[error("{column} {} {error}", Quoted(text))]
    BadDateTime {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
        /// The parser's reason.
        error: TimestampError,
    },
    /// A fraud label other than 0 or 1.
    #[error("{column} {} is not 0 or 1", Quoted(text))]
    NotALabel {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A fraud scenario outside 0..=3.
    #[error("{column} {} is not a fraud scenario (0, 1, 2 or 3)", Quoted(text))]
    NotAScenario {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A value that is an integer but too large to use (TX_TIME_SECONDS, TX_TIME_DAYS, a time).
    #[error("{column} {} is out of range", Quoted(text))]
    OutOfRange {
        /// Column name.
        column: String,
        /// The value as found.
        text: String,
    },
    /// A transaction id seen before in an accepted row.
    #[error("{column} {id} already appeared on {first}")]
    DuplicateId {
        /// Column name.
        column: String,
        /// The id.
        id: u64,
        /// Where the id first appeared.
        first: Place,
    },
    /// A time earlier than the previous accepted row's, under [`TimeOrder::Require`].
    #[error("{column} {time} is earlier than the previous row's {previous} (time going backwards)")]
    TimeBackwards {
        /// Column name.
        column: String,
        /// This row's time.
        time: Timestamp,
        /// The previous accepted row's time.
        previous: Timestamp,
    },
    /// TX_TIME_SECONDS or TX_TIME_DAYS disagreeing with TX_DATETIME and the origin.
    #[error("{column} {found} disagrees with {time_column}: expected {expected} {unit} since {origin}")]
    TimeMismatch {
        /// Column name (TX_TIME_SECONDS or TX_TIME_DAYS).
        column: String,
        /// The date-time column's name.
        time_column: String,
        /// The value found.
        found: i64,
        /// The value TX_DATETIME implies.
        expected: i64,
        /// "seconds" or "days".
        unit: &'static str,
        /// The origin, taken from the first accepted row.
        origin: Timestamp,
    },
    /// More distinct customer or terminal ids than a `u32` index can count.
    #[error("{column}: more than {} distinct ids", u32::MAX - 1)]
    TooManyIds {
        /// Column name.
        column: String,
    },
}

/// A value quoted and escaped for a message, cut short when long.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_CHARS: usize = 40;
        match self.0.char_indices().nth(MAX_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}...", &self.0[..cut]),
        }
    }
}

/// A row that failed validation: the file, the row's place and the reason.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {place}: {problem}", path.display())]
pub struct BadRow {
    /// The file.
    pub path: PathBuf,
    /// Where the row is.
    pub place: Place,
    /// What is wrong with it.
    pub problem: RowProblem,
}

/// Why a file could not be read. Each message names the file, and for a bad row its place.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file name has no known extension.
    #[error(transparent)]
    UnknownFormat(#[from] UnknownFormat),
    /// Reading the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file has no header line.
    #[error("{}: the file is empty (no header line)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A column that the mapping names is not in the file.
    #[error(
        "{}: missing column {column} ({field}); the columns are: {}; map the field to one of them \
         with `--column {field}=COLUMN`{}",
        path.display(),
        found.join(", "),
        if ColumnMapping::OPTIONAL.contains(field) { format!(", or to none with `--column {field}=`") } else { String::new() }
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The field ([`ColumnMapping::FIELDS`]).
        field: &'static str,
        /// The column name looked for.
        column: String,
        /// The columns the file has.
        found: Vec<String>,
    },
    /// A column that the mapping names appears twice in the header.
    #[error("{}: column {column} appears more than once in the header", path.display())]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: String,
    },
    /// The gzip data ends early: the file was cut short.
    #[error("{}: the gzip data is truncated (unexpected end of file)", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
    },
    /// The gzip data is corrupt.
    #[error("{}: not valid gzip data: {source}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: io::Error,
    },
    /// The Parquet reader failed (not a Parquet file, corrupt pages, ...).
    #[error("{}: cannot read Parquet: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        message: String,
    },
    /// A Parquet column has a type that cannot hold its field.
    #[error("{}: column {column} has type {found}, which cannot hold {field} (expected {expected})", path.display())]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: String,
        /// The field ([`ColumnMapping::FIELDS`]).
        field: &'static str,
        /// The column's Arrow type.
        found: String,
        /// The types accepted for the field.
        expected: &'static str,
    },
    /// A row failed validation under [`OnError::Fail`].
    #[error(transparent)]
    BadRow(Box<BadRow>),
    /// Writing the quarantine file failed.
    #[error("{}: cannot write the quarantine file: {source}", path.display())]
    Quarantine {
        /// The quarantine file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The quarantine file is the input file.
    #[error("{}: the quarantine file cannot be the input file", path.display())]
    QuarantineIsInput {
        /// The file.
        path: PathBuf,
    },
    /// [`ColumnMapping::set`] was given an unknown field.
    #[error("unknown field {field:?} in a column mapping; the fields are {}", ColumnMapping::FIELDS.join(", "))]
    UnknownField {
        /// The field as given.
        field: String,
    },
    /// [`ColumnMapping::set`] was given an empty column for a required field.
    #[error("the field {field} is required: its column name cannot be empty")]
    RequiredField {
        /// The field.
        field: &'static str,
    },
    /// [`ColumnMapping::apply`] was given text without `=`.
    #[error("column mapping {text:?} is not of the form field=column")]
    BadAssignment {
        /// The text as given.
        text: String,
    },
}

/// Reads and validates the transactions in `path` (CSV, gzip CSV or Parquet, by extension).
///
/// Progress is reported in bytes of the file for CSV and gzip CSV, in rows for Parquet.
pub fn read_transactions(
    path: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<Ingested, IngestError> {
    let format = FileFormat::from_path(path)?;
    if let OnError::Quarantine(q) = &options.on_error {
        check_quarantine_path(path, q)?;
    }
    match format {
        FileFormat::Csv | FileFormat::CsvGz => csv_reader::read(path, format, options, progress),
        FileFormat::Parquet => parquet_reader::read(path, options, progress),
    }
}

fn check_quarantine_path(input: &Path, quarantine: &Path) -> Result<(), IngestError> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(quarantine)) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == quarantine,
    };
    if same { Err(IngestError::QuarantineIsInput { path: quarantine.to_path_buf() }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_set_accepts_every_field_and_absent_labels() {
        let mut m = ColumnMapping::default();
        m.set("amount", "AMT").unwrap();
        m.apply("fraud=").unwrap();
        m.apply("scenario = SC").unwrap();
        assert_eq!(m.amount, "AMT");
        assert_eq!(m.fraud, None);
        assert_eq!(m.scenario.as_deref(), Some("SC"));
        for field in ColumnMapping::FIELDS {
            m.set(field, "X").unwrap();
        }
    }

    #[test]
    fn mapping_set_refuses_unknown_fields_and_empty_required_columns() {
        let mut m = ColumnMapping::default();
        assert_eq!(
            m.set("amt", "A").unwrap_err().to_string(),
            "unknown field \"amt\" in a column mapping; the fields are transaction_id, time, customer_id, \
             terminal_id, amount, fraud, scenario"
        );
        assert_eq!(
            m.set("amount", "").unwrap_err().to_string(),
            "the field amount is required: its column name cannot be empty"
        );
        assert_eq!(
            m.apply("amount").unwrap_err().to_string(),
            "column mapping \"amount\" is not of the form field=column"
        );
    }

    #[test]
    fn quoted_values_are_escaped_and_cut_short() {
        assert_eq!(Quoted("12,5").to_string(), "\"12,5\"");
        assert_eq!(Quoted("a\"b").to_string(), "\"a\\\"b\"");
        let long = "x".repeat(100);
        assert_eq!(Quoted(&long).to_string(), format!("{:?}...", "x".repeat(40)));
    }

    #[test]
    fn report_says_when_there_are_no_rows() {
        let report = IngestReport {
            format: FileFormat::Csv,
            rows_read: 0,
            accepted: 0,
            rejected: 0,
            quarantine: None,
            sorted: false,
            ignored_columns: vec![],
        };
        assert_eq!(report.to_string(), "the file has a header but no rows");
    }
}
