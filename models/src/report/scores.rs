//! The per-transaction scores file: `transaction_id`, `score`, `label` (0/1), as CSV or Parquet
//! (by extension), every score written in the shortest text (or the f64) that reads back to the
//! same bits, so that the metrics recomputed from the file equal the report's.

use super::ReportError;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt8Type, UInt64Type};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt8Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// The header of a scores CSV, and the column names of a scores Parquet file.
pub const COLUMNS: [&str; 3] = ["transaction_id", "score", "label"];

/// The columns of a scores file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoresFile {
    /// Transaction ids.
    pub ids: Vec<u64>,
    /// Scores.
    pub scores: Vec<f64>,
    /// Labels (true = fraud).
    pub labels: Vec<bool>,
}

enum Kind {
    Csv,
    Parquet,
}

fn kind(path: &Path) -> Result<Kind, ReportError> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok(Kind::Csv),
        Some("parquet") => Ok(Kind::Parquet),
        _ => Err(ReportError::Extension { path: path.to_path_buf() }),
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

fn bad(path: &Path, message: String) -> ReportError {
    ReportError::Scores { path: path.to_path_buf(), message }
}

/// Writes one row per transaction: id, score and label; `.csv` or `.parquet`.
pub fn write_scores(path: &Path, ids: &[u64], scores: &[f64], labels: &[bool]) -> Result<(), ReportError> {
    if ids.len() != scores.len() || labels.len() != scores.len() {
        return Err(bad(
            path,
            format!(
                "{} ids, {} scores and {} labels do not make rows",
                ids.len(),
                scores.len(),
                labels.len()
            ),
        ));
    }
    let file = std::fs::File::create(path).map_err(io(path))?;
    match kind(path)? {
        Kind::Csv => {
            let mut out = BufWriter::new(file);
            writeln!(out, "{}", COLUMNS.join(",")).map_err(io(path))?;
            for ((id, s), y) in ids.iter().zip(scores).zip(labels) {
                // `{}` prints the shortest text that parses back to the same f64.
                writeln!(out, "{id},{s},{}", u8::from(*y)).map_err(io(path))?;
            }
            out.flush().map_err(io(path))
        }
        Kind::Parquet => {
            let schema = Arc::new(Schema::new(vec![
                Field::new(COLUMNS[0], DataType::UInt64, false),
                Field::new(COLUMNS[1], DataType::Float64, false),
                Field::new(COLUMNS[2], DataType::UInt8, false),
            ]));
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from(ids.to_vec())),
                Arc::new(Float64Array::from(scores.to_vec())),
                Arc::new(UInt8Array::from_iter_values(labels.iter().map(|&y| u8::from(y)))),
            ];
            let parquet = |e: &dyn std::fmt::Display| bad(path, format!("writing Parquet: {e}"));
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| parquet(&e))?;
            let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| parquet(&e))?;
            writer.write(&batch).map_err(|e| parquet(&e))?;
            writer.close().map_err(|e| parquet(&e))?;
            Ok(())
        }
    }
}

/// Reads a file [`write_scores`] wrote (CSV with its header, or Parquet with its columns).
pub fn read_scores(path: &Path) -> Result<ScoresFile, ReportError> {
    let mut out = ScoresFile::default();
    match kind(path)? {
        Kind::Csv => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let mut lines = text.lines().enumerate();
            match lines.next() {
                Some((_, header)) if header == COLUMNS.join(",") => {}
                _ => return Err(bad(path, format!("line 1: the header must be {}", COLUMNS.join(",")))),
            }
            for (i, line) in lines {
                let n = i + 1;
                let cells: Vec<&str> = line.split(',').collect();
                let [id, score, label] = cells[..] else {
                    return Err(bad(path, format!("line {n}: {} cells, expected 3", cells.len())));
                };
                out.ids.push(id.parse().map_err(|_| {
                    bad(path, format!("line {n}: transaction_id {id:?} is not an unsigned integer"))
                })?);
                let s: f64 = score
                    .parse()
                    .map_err(|_| bad(path, format!("line {n}: score {score:?} is not a number")))?;
                out.scores.push(s);
                out.labels.push(match label {
                    "0" => false,
                    "1" => true,
                    other => return Err(bad(path, format!("line {n}: label {other:?} is not 0 or 1"))),
                });
            }
        }
        Kind::Parquet => {
            let file = std::fs::File::open(path).map_err(io(path))?;
            let parquet = |e: &dyn std::fmt::Display| bad(path, format!("reading Parquet: {e}"));
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| parquet(&e))?
                .build()
                .map_err(|e| parquet(&e))?;
            for batch in reader {
                let batch = batch.map_err(|e| parquet(&e))?;
                let column = |name: &str| {
                    batch.column_by_name(name).ok_or_else(|| bad(path, format!("no column {name}")))
                };
                let wrong = |name: &str| {
                    bad(path, format!("column {name} has another type than {name} is written with"))
                };
                let ids =
                    column(COLUMNS[0])?.as_primitive_opt::<UInt64Type>().ok_or_else(|| wrong(COLUMNS[0]))?;
                let scores =
                    column(COLUMNS[1])?.as_primitive_opt::<Float64Type>().ok_or_else(|| wrong(COLUMNS[1]))?;
                let labels =
                    column(COLUMNS[2])?.as_primitive_opt::<UInt8Type>().ok_or_else(|| wrong(COLUMNS[2]))?;
                out.ids.extend(ids.values().iter());
                out.scores.extend(scores.values().iter());
                out.labels.extend(labels.values().iter().map(|&y| y != 0));
            }
        }
    }
    Ok(out)
}
