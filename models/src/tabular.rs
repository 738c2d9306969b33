//! Generic tabular mode: any CSV of numeric columns with a header and a 0/1 label column, for
//! users who bring their own features. Every bad cell is named by line, column and reason; empty
//! cells (and `NA`, `NaN`) are missing values, which the tree trainers route by default
//! direction and the others refuse by row and feature.

use crate::train::LabeledRows;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a tabular file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TabularError {
    /// The file could not be opened or read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong, with the line when known.
        message: String,
    },
    /// A column named on the command line is not in the header.
    #[error("{path}: no column {column:?} in the header (columns: {header})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header's columns, comma-separated.
        header: String,
    },
    /// Two header columns share a name.
    #[error("{path}: the header names column {column:?} twice")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The name.
        column: String,
    },
    /// A cell is not what its column needs.
    #[error("{path}: line {line}, column {column}: {value:?} {reason}")]
    BadCell {
        /// The file.
        path: PathBuf,
        /// The physical line (the header is line 1).
        line: u64,
        /// The column's name.
        column: String,
        /// The cell's text.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A row has another number of cells than the header.
    #[error("{path}: line {line} has {got} cells but the header has {expected}")]
    RowLength {
        /// The file.
        path: PathBuf,
        /// The physical line.
        line: u64,
        /// Cells in the header.
        expected: usize,
        /// Cells in the row.
        got: usize,
    },
    /// No feature column is left, or no row.
    #[error("{path}: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A `--split` text that is not `random:FRACTION` or `time:COLUMN:FRACTION`.
    #[error("split {0:?}: use random:FRACTION or time:COLUMN:FRACTION, FRACTION strictly between 0 and 1")]
    BadSplit(String),
    /// The split leaves one side empty.
    #[error("split: holding out {fraction} of {rows} rows leaves a side empty")]
    EmptySide {
        /// The held-out share.
        fraction: f64,
        /// Rows in the file.
        rows: usize,
    },
}

/// How rows are split into training and validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Split {
    /// A random `fraction` of the rows (drawn from the seed) is held out.
    Random {
        /// Share of rows held out.
        fraction: f64,
    },
    /// The latest `fraction` of the rows by `column` is held out.
    Time {
        /// The time column (any increasing number: seconds, days ...).
        column: String,
        /// Share of rows held out.
        fraction: f64,
    },
}

impl Split {
    /// The time column, for a time split.
    pub fn time_column(&self) -> Option<&str> {
        match self {
            Split::Time { column, .. } => Some(column),
            Split::Random { .. } => None,
        }
    }
}

impl FromStr for Split {
    type Err = TabularError;

    /// Reads `random:0.3` or `time:COLUMN:0.3`.
    fn from_str(text: &str) -> Result<Split, TabularError> {
        let bad = || TabularError::BadSplit(text.to_string());
        let fraction = |f: &str| -> Result<f64, TabularError> {
            let f: f64 = f.parse().map_err(|_| bad())?;
            if f > 0.0 && f < 1.0 { Ok(f) } else { Err(bad()) }
        };
        match text.split_once(':') {
            Some(("random", f)) => Ok(Split::Random { fraction: fraction(f)? }),
            Some(("time", rest)) => match rest.rsplit_once(':') {
                Some((column, f)) if !column.is_empty() => {
                    Ok(Split::Time { column: column.to_string(), fraction: fraction(f)? })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// A numeric table: features row-major, labels, and the time column when a time split needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TabularData {
    /// Feature column names, in file order.
    pub feature_names: Vec<String>,
    /// `len() * feature_names.len()` values, row-major; NaN where a cell was empty.
    pub features: Vec<f64>,
    /// True for fraud (label 1).
    pub labels: Vec<bool>,
    /// The time column's values, when one was named.
    pub time: Option<Vec<f64>>,
}

fn parse_number(text: &str) -> Result<f64, &'static str> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("na") || t.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("is infinite"),
        Err(_) => Err("is not a number"),
    }
}

fn parse_label(text: &str) -> Result<bool, &'static str> {
    match text.trim() {
        "1" | "1.0" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "0.0" | "false" | "False" | "FALSE" => Ok(false),
        "" => Err("is empty; every row needs a label"),
        _ => Err("is not a label (0/1 or false/true)"),
    }
}

impl TabularData {
    /// Reads `path`: a header, then rows of numbers; `label` is the label column, `drop` columns
    /// are ignored, `time` (if any) is read aside for a time split and is not a feature.
    pub fn read(
        path: &Path,
        label: &str,
        drop: &[String],
        time: Option<&str>,
    ) -> Result<TabularData, TabularError> {
        let read_err = |message: String| TabularError::Read { path: path.to_path_buf(), message };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(path)
            .map_err(|e| read_err(e.to_string()))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| read_err(e.to_string()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let joined = header.join(",");
        let find = |column: &str| {
            header.iter().position(|h| h == column).ok_or_else(|| TabularError::MissingColumn {
                path: path.to_path_buf(),
                column: column.to_string(),
                header: joined.clone(),
            })
        };
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(TabularError::DuplicateColumn { path: path.to_path_buf(), column: h.clone() });
            }
        }
        let label_at = find(label)?;
        let time_at = time.map(find).transpose()?;
        for d in drop {
            find(d)?;
        }
        let feature_at: Vec<usize> = (0..header.len())
            .filter(|&i| i != label_at && Some(i) != time_at && !drop.contains(&header[i]))
            .collect();
        if feature_at.is_empty() {
            return Err(TabularError::Empty { path: path.to_path_buf(), what: "no feature column is left" });
        }
        let mut data = TabularData {
            feature_names: feature_at.iter().map(|&i| header[i].clone()).collect(),
            time: time_at.map(|_| Vec::new()),
            ..TabularData::default()
        };
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(read_err(e.to_string())),
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != header.len() {
                return Err(TabularError::RowLength {
                    path: path.to_path_buf(),
                    line,
                    expected: header.len(),
                    got: record.len(),
                });
            }
            let cell_err = |at: usize, reason| TabularError::BadCell {
                path: path.to_path_buf(),
                line,
                column: header[at].clone(),
                value: record[at].to_string(),
                reason,
            };
            data.labels.push(parse_label(&record[label_at]).map_err(|r| cell_err(label_at, r))?);
            for &at in &feature_at {
                data.features.push(parse_number(&record[at]).map_err(|r| cell_err(at, r))?);
            }
            if let (Some(at), Some(times)) = (time_at, data.time.as_mut()) {
                let t = parse_number(&record[at]).map_err(|r| cell_err(at, r))?;
                if t.is_nan() {
                    return Err(cell_err(at, "is missing; a time split needs every row's time"));
                }
                times.push(t);
            }
        }
        if data.labels.is_empty() {
            return Err(TabularError::Empty {
                path: path.to_path_buf(),
                what: "the file has a header but no row",
            });
        }
        Ok(data)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// (training, validation) rows by `split`; `seed` draws a random split.
    pub fn split(&self, split: &Split, seed: u64) -> Result<(LabeledRows, LabeledRows), TabularError> {
        let n = self.len();
        let (order, fraction) = match split {
            Split::Random { fraction } => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed));
                // Training rows keep file order, as do validation rows.
                let held = held_out(n, *fraction)?;
                let (train, valid) = order.split_at(n - held);
                let (mut train, mut valid) = (train.to_vec(), valid.to_vec());
                train.sort_unstable();
                valid.sort_unstable();
                (train.into_iter().chain(valid).collect::<Vec<_>>(), *fraction)
            }
            Split::Time { column, fraction } => {
                let Some(time) = &self.time else {
                    return Err(TabularError::BadSplit(format!(
                        "time:{column}:{fraction} (the time column was not read)"
                    )));
                };
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
                (order, *fraction)
            }
        };
        let held = held_out(n, fraction)?;
        let part = |rows: &[usize]| LabeledRows {
            n_features: self.feature_names.len(),
            features: rows.iter().flat_map(|&i| self.row(i).iter().copied()).collect(),
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
        };
        let (train, valid) = order.split_at(n - held);
        Ok((part(train), part(valid)))
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        let n = self.feature_names.len();
        &self.features[i * n..(i + 1) * n]
    }
}

fn held_out(rows: usize, fraction: f64) -> Result<usize, TabularError> {
    let held = (rows as f64 * fraction).round() as usize;
    if held == 0 || held >= rows {
        return Err(TabularError::EmptySide { fraction, rows });
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_random_and_time_splits() {
        assert_eq!("random:0.3".parse::<Split>().unwrap(), Split::Random { fraction: 0.3 });
        assert_eq!(
            "time:TX:TIME:0.25".parse::<Split>().unwrap(),
            Split::Time { column: "TX:TIME".into(), fraction: 0.25 }
        );
        for bad in ["random:1.0", "random:x", "time:0.3", "kfold:3", "time::0.2"] {
            assert!(bad.parse::<Split>().is_err(), "{bad} should be refused");
        }
    }
}
