//! Training and test sets cut from a transaction history and its feature table: the rows the
//! scorer would see (features as f64, in the schema's order), with each row's label, card
//! (customer) and day, which the card-based metrics need. [`Holdout`] is the handbook's protocol.

use crate::metrics::{Evaluation, MetricError};
use crate::train::{Samples, TrainError};
use exporter::Transactions;
use exporter::features::FeatureTable;
use rayon::prelude::*;
use scorer::Timestamp;
use scorer::model::Model;
use scorer::time::SECONDS_PER_DAY;

/// Why a dataset could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    /// The feature table was computed for another transaction history.
    #[error("the feature table has {table} rows but there are {transactions} transactions")]
    TableLength {
        /// Transactions given.
        transactions: usize,
        /// Rows of the feature table.
        table: usize,
    },
    /// A protocol period holds no transaction.
    #[error("the {part} period {from} .. {to} holds no transaction")]
    EmptyPeriod {
        /// `training` or `test`.
        part: &'static str,
        /// First day of the period.
        from: Timestamp,
        /// End of the period (exclusive).
        to: Timestamp,
    },
    /// A row index past the end of the history.
    #[error("row {row} is past the end of the history ({transactions} transactions)")]
    RowOutOfRange {
        /// The row asked for.
        row: usize,
        /// Transactions in the history.
        transactions: usize,
    },
    /// A protocol length of zero days.
    #[error("the {0} period must last at least one day")]
    ZeroDays(&'static str),
}

/// Rows for training or evaluating a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// The feature names, in column order.
    pub feature_names: Vec<String>,
    /// `len() * feature_names.len()` values, row-major: the scorer's input vectors.
    pub features: Vec<f64>,
    /// True for fraud.
    pub labels: Vec<bool>,
    /// The card (customer) of each row, as its index in the history's customer table.
    pub cards: Vec<u32>,
    /// The day of each row: whole days since the Unix epoch (UTC).
    pub days: Vec<i64>,
    /// Each row's index in the transaction history it was cut from.
    pub rows: Vec<usize>,
}

impl Dataset {
    /// The given `rows` of a history and of its feature table, in that order.
    pub fn from_rows(
        tx: &Transactions,
        table: &FeatureTable,
        rows: &[usize],
    ) -> Result<Dataset, DatasetError> {
        if table.len() != tx.len() {
            return Err(DatasetError::TableLength { transactions: tx.len(), table: table.len() });
        }
        if let Some(&row) = rows.iter().find(|&&r| r >= tx.len()) {
            return Err(DatasetError::RowOutOfRange { row, transactions: tx.len() });
        }
        let mut features = Vec::with_capacity(rows.len() * table.schema.len());
        for &i in rows {
            features.extend_from_slice(table.row(i));
        }
        Ok(Dataset {
            feature_names: table.schema.features().iter().map(|f| f.name.clone()).collect(),
            features,
            labels: rows.iter().map(|&i| tx.fraud[i] != 0).collect(),
            cards: rows.iter().map(|&i| tx.customer[i]).collect(),
            days: rows.iter().map(|&i| day_of(tx.time[i])).collect(),
            rows: rows.to_vec(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        let n = self.n_features();
        &self.features[i * n..(i + 1) * n]
    }

    /// Number of fraud rows.
    pub fn frauds(&self) -> usize {
        self.labels.iter().filter(|&&y| y).count()
    }

    /// The features and labels as a trainer takes them.
    pub fn samples(&self) -> Result<Samples<'_>, TrainError> {
        Samples::new(&self.features, self.n_features(), &self.labels)
    }

    /// Every row's score under `model`, through the scorer's evaluator.
    pub fn scores(&self, model: &Model) -> Vec<f64> {
        let n = self.n_features().max(1);
        self.features.par_chunks(n).map(|row| model.score(row)).collect()
    }

    /// AUC ROC, average precision and card precision@k of `scores` (one per row) on this set.
    pub fn evaluate(&self, scores: &[f64], k: usize) -> Result<Evaluation, MetricError> {
        Evaluation::new(scores, &self.labels, &self.cards, &self.days, k)
    }
}

/// The day of a timestamp: whole days since the Unix epoch (UTC).
pub fn day_of(t: Timestamp) -> i64 {
    t.0.div_euclid(SECONDS_PER_DAY)
}

/// The midnight starting a day of [`day_of`].
pub fn day_start(day: i64) -> Timestamp {
    Timestamp(day * SECONDS_PER_DAY)
}

/// The handbook's train / delay / test protocol (ch. 3): train on `train_days` days, skip
/// `delay_days` (labels arrive late), test on the next `test_days`. From each test day, the
/// transactions of "known compromised" customers are dropped: those with a fraud from the first
/// training day up to the day `delay_days + 1` days before the test day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holdout {
    /// First training day (the day holding this time; UTC).
    pub train_start: Timestamp,
    /// Training days.
    pub train_days: u32,
    /// Days between training and test whose labels are not known yet.
    pub delay_days: u32,
    /// Test days.
    pub test_days: u32,
}

/// A training set and its test set.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTest {
    /// Rows to learn from.
    pub train: Dataset,
    /// Rows to evaluate on.
    pub test: Dataset,
    /// Test-period transactions dropped as belonging to known compromised customers.
    pub dropped_known_compromised: usize,
}

impl Holdout {
    /// The handbook's baseline: train 2018-07-25 .. 07-31, 7 days delay, test 2018-08-08 .. 08-14.
    pub fn handbook() -> Holdout {
        Holdout {
            // 2018-07-25 00:00:00 UTC.
            train_start: Timestamp(1_532_476_800),
            train_days: 7,
            delay_days: 7,
            test_days: 7,
        }
    }

    /// Cuts the training and test sets from `tx` (any order) and its feature table.
    pub fn split(&self, tx: &Transactions, table: &FeatureTable) -> Result<TrainTest, DatasetError> {
        for (part, days) in [("training", self.train_days), ("test", self.test_days)] {
            if days == 0 {
                return Err(DatasetError::ZeroDays(part));
            }
        }
        if table.len() != tx.len() {
            return Err(DatasetError::TableLength { transactions: tx.len(), table: table.len() });
        }
        let first = day_of(self.train_start);
        let train_end = first + i64::from(self.train_days);
        let test_start = train_end + i64::from(self.delay_days);
        let test_end = test_start + i64::from(self.test_days);
        let day: Vec<i64> = tx.time.iter().map(|&t| day_of(t)).collect();
        // Each customer's first fraud day on or after the first training day.
        let mut first_fraud = vec![i64::MAX; tx.customers.len()];
        for ((&d, &fraud), &customer) in day.iter().zip(&tx.fraud).zip(&tx.customer) {
            if fraud != 0 && d >= first {
                let c = customer as usize;
                first_fraud[c] = first_fraud[c].min(d);
            }
        }
        let mut train_rows = Vec::new();
        let mut test_rows = Vec::new();
        let mut dropped = 0;
        for (i, &d) in day.iter().enumerate() {
            if (first..train_end).contains(&d) {
                train_rows.push(i);
            } else if (test_start..test_end).contains(&d) {
                // Known by test day d: frauds on days before d - delay.
                if first_fraud[tx.customer[i] as usize] < d - i64::from(self.delay_days) {
                    dropped += 1;
                } else {
                    test_rows.push(i);
                }
            }
        }
        if train_rows.is_empty() {
            return Err(DatasetError::EmptyPeriod {
                part: "training",
                from: day_start(first),
                to: day_start(train_end),
            });
        }
        if test_rows.is_empty() {
            return Err(DatasetError::EmptyPeriod {
                part: "test",
                from: day_start(test_start),
                to: day_start(test_end),
            });
        }
        Ok(TrainTest {
            train: Dataset::from_rows(tx, table, &train_rows)?,
            test: Dataset::from_rows(tx, table, &test_rows)?,
            dropped_known_compromised: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter::EntityIds;
    use scorer::features::FeatureSchema;

    /// One transaction per (day, customer) pair given, at noon; fraud where marked.
    fn history(rows: &[(i64, &str, bool)]) -> (Transactions, FeatureTable) {
        let mut tx =
            Transactions { customers: EntityIds::new(), terminals: EntityIds::new(), ..Default::default() };
        let start = day_of(Holdout::handbook().train_start);
        for (i, &(d, customer, fraud)) in rows.iter().enumerate() {
            tx.transaction_id.push(i as u64);
            tx.time.push(Timestamp((start + d) * SECONDS_PER_DAY + 43_200));
            tx.customer.push(tx.customers.intern(customer).unwrap());
            tx.terminal.push(tx.terminals.intern("t").unwrap());
            tx.amount.push(10.0);
            tx.fraud.push(u8::from(fraud));
            tx.scenario.push(0);
        }
        let schema = FeatureSchema::handbook();
        let values = (0..rows.len() * schema.len()).map(|v| v as f64).collect();
        (tx, FeatureTable { schema, values })
    }

    #[test]
    fn drops_customers_with_a_fraud_known_before_each_test_day() {
        // Days relative to 2018-07-25: train 0..7, delay 7..14, test 14..21.
        let (tx, table) = history(&[
            (3, "a", true),   // training fraud: a is known compromised on every test day
            (10, "b", true),  // delay-period fraud on day 10: known from test day 18 on (10 < 18 - 7)
            (14, "a", false), // dropped
            (17, "b", false), // kept: on day 17, day 10's fraud is not yet known (10 < 10 fails)
            (18, "b", false), // dropped
            (15, "c", true),  // a test-day fraud: never makes c known within the test week
            (20, "c", false), // kept
            (25, "d", false), // after the test week: ignored
        ]);
        let split = Holdout::handbook().split(&tx, &table).unwrap();
        assert_eq!(split.train.rows, [0]);
        assert_eq!(split.test.rows, [3, 5, 6]);
        assert_eq!(split.dropped_known_compromised, 2);
        assert_eq!(split.test.labels, [false, true, false]);
        assert_eq!(split.test.row(1), table.row(5));
        assert_eq!(split.test.days[0], day_of(Holdout::handbook().train_start) + 17);
    }

    #[test]
    fn refuses_a_row_past_the_end_and_a_table_of_another_history() {
        let (tx, table) = history(&[(1, "a", true), (2, "b", false)]);
        let err = Dataset::from_rows(&tx, &table, &[0, 2]).unwrap_err();
        assert_eq!(err.to_string(), "row 2 is past the end of the history (2 transactions)");
        let (other, _) = history(&[(1, "a", true)]);
        let err = Holdout::handbook().split(&other, &table).unwrap_err();
        assert_eq!(err, DatasetError::TableLength { transactions: 1, table: 2 });
    }

    #[test]
    fn names_an_empty_period() {
        let (tx, table) = history(&[(1, "a", true)]);
        let err = Holdout::handbook().split(&tx, &table).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the test period 2018-08-08 00:00:00 .. 2018-08-15 00:00:00 holds no transaction"
        );
    }
}
