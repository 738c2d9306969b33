//! The simulator against the handbook's own simulated data: with the default (handbook) configuration,
//! the simulated history must match the published file on its headline statistics within 10 %.

use exporter::simulate::{SimulationConfig, simulate};
use exporter::{NoProgress, Transactions};
use flate2::read::GzDecoder;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

/// Largest accepted relative difference between simulator and handbook.
const TOLERANCE: f64 = 0.10;

/// Running sums from which the compared statistics are computed, the same way for both sources.
#[derive(Default)]
struct Tally {
    transactions: u64,
    by_scenario: [u64; 4],
    frauds: u64,
    amount_sum: f64,
    amount_sq_sum: f64,
    days: HashSet<i64>,
    /// Per customer id: whether it has at least one fraud.
    customers: HashMap<String, bool>,
}

impl Tally {
    fn add(&mut self, customer: &str, day: i64, amount: f64, fraud: bool, scenario: u8) {
        self.transactions += 1;
        self.by_scenario[usize::from(scenario.min(3))] += 1;
        self.frauds += u64::from(fraud);
        self.amount_sum += amount;
        self.amount_sq_sum += amount * amount;
        self.days.insert(day);
        match self.customers.get_mut(customer) {
            Some(f) => *f |= fraud,
            None => {
                self.customers.insert(customer.to_owned(), fraud);
            }
        }
    }

    /// (name, value) of every compared statistic.
    fn stats(&self) -> Vec<(&'static str, f64)> {
        let n = self.transactions as f64;
        let mean = self.amount_sum / n;
        let with_fraud = self.customers.values().filter(|&&f| f).count() as f64;
        vec![
            ("transactions per day", n / self.days.len() as f64),
            ("fraud share", self.frauds as f64 / n),
            ("scenario 1 share", self.by_scenario[1] as f64 / n),
            ("scenario 2 share", self.by_scenario[2] as f64 / n),
            ("scenario 3 share", self.by_scenario[3] as f64 / n),
            ("amount mean", mean),
            ("amount std", (self.amount_sq_sum / n - mean * mean).sqrt()),
            ("customers with a fraud", with_fraud / self.customers.len() as f64),
        ]
    }
}

fn tally_simulated(tx: &Transactions) -> Tally {
    let mut t = Tally::default();
    for i in 0..tx.len() {
        let customer = tx.customers.id(tx.customer[i]);
        t.add(customer, tx.time_days(i), tx.amount[i], tx.fraud[i] == 1, tx.scenario[i]);
    }
    t
}

fn tally_handbook(path: &PathBuf) -> Tally {
    let file = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut csv = csv::Reader::from_reader(BufReader::new(GzDecoder::new(file)));
    let header = csv.byte_headers().expect("handbook header").clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name.as_bytes())
            .unwrap_or_else(|| panic!("handbook file has no {name}"))
    };
    let (customer, amount, days, fraud, scenario) = (
        column("CUSTOMER_ID"),
        column("TX_AMOUNT"),
        column("TX_TIME_DAYS"),
        column("TX_FRAUD"),
        column("TX_FRAUD_SCENARIO"),
    );
    let text = |r: &csv::ByteRecord, c: usize| {
        std::str::from_utf8(&r[c]).expect("handbook text is UTF-8").to_owned()
    };
    let mut t = Tally::default();
    let mut row = csv::ByteRecord::new();
    while csv.read_byte_record(&mut row).expect("handbook row") {
        let number = |c: usize| {
            text(&row, c).parse::<f64>().unwrap_or_else(|e| panic!("handbook {}: {e}", text(&row, c)))
        };
        t.add(
            &text(&row, customer),
            number(days) as i64,
            number(amount),
            number(fraud) == 1.0,
            number(scenario) as u8,
        );
    }
    t
}

#[test]
fn default_config_matches_handbook_statistics_within_ten_percent() {
    let Some(path) = handbook_data::required(handbook_data::TRANSACTIONS) else { return };

    let simulated = simulate(&SimulationConfig::default(), &NoProgress).expect("default config is valid");
    let ours = tally_simulated(&simulated).stats();
    let theirs = tally_handbook(&path).stats();

    println!("{:<24} {:>12} {:>12} {:>8}", "statistic", "simulator", "handbook", "diff");
    let mut failures = Vec::new();
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        let diff = (a - b) / b;
        println!("{name:<24} {a:>12.6} {b:>12.6} {:>+7.1}%", 100.0 * diff);
        if diff.abs() > TOLERANCE || !diff.is_finite() {
            failures.push(format!("{name}: simulator {a:.6}, handbook {b:.6} ({:+.1} %)", 100.0 * diff));
        }
    }
    assert!(failures.is_empty(), "off by more than {} %: {failures:#?}", 100.0 * TOLERANCE);
}
