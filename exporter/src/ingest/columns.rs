//! Finding the mapped columns in a file's header: one rule for CSV and Parquet, so that both
//! name a missing or repeated column the same way.

use super::{ColumnMapping, IngestError};
use std::path::Path;

/// The optional handbook column checked against TX_DATETIME, in seconds from the origin.
pub(super) const TIME_SECONDS: &str = "TX_TIME_SECONDS";
/// The optional handbook column checked against TX_DATETIME, in whole days from the origin.
pub(super) const TIME_DAYS: &str = "TX_TIME_DAYS";

/// One value per field: a column index, a column name, a decoded array...
#[derive(Clone, Debug)]
pub(super) struct Fields<T> {
    pub id: T,
    pub time: T,
    pub customer: T,
    pub terminal: T,
    pub amount: T,
    pub fraud: Option<T>,
    pub scenario: Option<T>,
    pub seconds: Option<T>,
    pub days: Option<T>,
}

impl<T> Fields<T> {
    /// The fields present, with the field's name ([`ColumnMapping::FIELDS`], or the column name
    /// for the two optional time columns), in the handbook's column order.
    pub fn present(&self) -> Vec<(&'static str, &T)> {
        let mut out = vec![
            ("transaction_id", &self.id),
            ("time", &self.time),
            ("customer_id", &self.customer),
            ("terminal_id", &self.terminal),
            ("amount", &self.amount),
        ];
        let optional = [
            ("fraud", &self.fraud),
            ("scenario", &self.scenario),
            (TIME_SECONDS, &self.seconds),
            (TIME_DAYS, &self.days),
        ];
        out.extend(optional.into_iter().filter_map(|(field, v)| v.as_ref().map(|v| (field, v))));
        out
    }
}

/// The mapped columns found in a header.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    /// Column index of each field.
    pub index: Fields<usize>,
    /// Column name of each field, for messages.
    pub names: Fields<String>,
    /// Header columns that no field reads.
    pub ignored: Vec<String>,
}

/// Finds every mapped column in `header` (names compared after trimming spaces).
pub(super) fn resolve(
    path: &Path,
    header: &[String],
    mapping: &ColumnMapping,
) -> Result<Resolved, IngestError> {
    let find = |column: &str| -> Result<Option<usize>, IngestError> {
        let mut hits = header.iter().enumerate().filter(|(_, h)| h.trim() == column.trim()).map(|(i, _)| i);
        let first = hits.next();
        if first.is_some() && hits.next().is_some() {
            return Err(IngestError::DuplicateColumn {
                path: path.to_path_buf(),
                column: column.to_string(),
            });
        }
        Ok(first)
    };
    let required = |field: &'static str, column: &str| -> Result<usize, IngestError> {
        find(column)?.ok_or_else(|| IngestError::MissingColumn {
            path: path.to_path_buf(),
            field,
            column: column.to_string(),
            found: header.to_vec(),
        })
    };
    let index = Fields {
        id: required("transaction_id", &mapping.transaction_id)?,
        time: required("time", &mapping.time)?,
        customer: required("customer_id", &mapping.customer_id)?,
        terminal: required("terminal_id", &mapping.terminal_id)?,
        amount: required("amount", &mapping.amount)?,
        fraud: mapping.fraud.as_deref().map(|c| required("fraud", c)).transpose()?,
        scenario: mapping.scenario.as_deref().map(|c| required("scenario", c)).transpose()?,
        seconds: find(TIME_SECONDS)?,
        days: find(TIME_DAYS)?,
    };
    let name = |i: usize| header[i].trim().to_string();
    let names = Fields {
        id: name(index.id),
        time: name(index.time),
        customer: name(index.customer),
        terminal: name(index.terminal),
        amount: name(index.amount),
        fraud: index.fraud.map(name),
        scenario: index.scenario.map(name),
        seconds: index.seconds.map(name),
        days: index.days.map(name),
    };
    let used: Vec<usize> = index.present().into_iter().map(|(_, &i)| i).collect();
    let ignored =
        header.iter().enumerate().filter(|(i, _)| !used.contains(i)).map(|(_, h)| h.clone()).collect();
    Ok(Resolved { index, names, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &str) -> Vec<String> {
        names.split(',').map(str::to_string).collect()
    }

    #[test]
    fn finds_the_handbook_columns_and_the_optional_time_columns() {
        let h = header(
            "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO",
        );
        let r = resolve(Path::new("f.csv"), &h, &ColumnMapping::default()).unwrap();
        assert_eq!((r.index.id, r.index.amount, r.index.seconds, r.index.days), (0, 4, Some(5), Some(6)));
        assert_eq!((r.index.fraud, r.index.scenario), (Some(7), Some(8)));
        assert!(r.ignored.is_empty());
    }

    #[test]
    fn names_a_missing_column_and_lists_the_columns_found() {
        let h = header("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,EXTRA");
        let err = resolve(Path::new("f.csv"), &h, &ColumnMapping::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.csv: missing column TX_AMOUNT (amount); the columns are: TRANSACTION_ID, TX_DATETIME, \
             CUSTOMER_ID, TERMINAL_ID, EXTRA; map the field to one of them with `--column amount=COLUMN`"
        );
    }

    #[test]
    fn a_missing_optional_column_may_be_mapped_to_none() {
        let h = header("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD");
        let err = resolve(Path::new("f.csv"), &h, &ColumnMapping::default()).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "map the field to one of them with `--column scenario=COLUMN`, or to none with \
                 `--column scenario=`"
            ),
            "{err}"
        );
        let mut none = ColumnMapping::default();
        none.apply("scenario=").unwrap();
        assert!(resolve(Path::new("f.csv"), &h, &none).is_ok());
    }

    #[test]
    fn refuses_a_mapped_column_that_appears_twice() {
        let h = header("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_AMOUNT");
        let m = ColumnMapping { fraud: None, scenario: None, ..Default::default() };
        let err = resolve(Path::new("f.csv"), &h, &m).unwrap_err();
        assert_eq!(err.to_string(), "f.csv: column TX_AMOUNT appears more than once in the header");
    }
}
