//! What a transaction history holds, in numbers: counts, fraud share per scenario, per day.
//! Used by `tollgate ingest`, `tollgate simulate` and the demo.

use crate::Transactions;
use crate::transactions::scenario;
use scorer::Timestamp;
use std::fmt;

/// Counts for one calendar day (UTC).
#[derive(Clone, Debug, PartialEq)]
pub struct DaySummary {
    /// Midnight of the day.
    pub day: Timestamp,
    /// Transactions on that day.
    pub transactions: u64,
    /// Frauds on that day, by scenario (index 0 counts genuine transactions).
    pub by_scenario: [u64; 4],
}

impl DaySummary {
    /// Frauds on that day, any scenario.
    pub fn frauds(&self) -> u64 {
        self.by_scenario[1..].iter().sum()
    }
}

/// A summary of a transaction history.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Number of transactions.
    pub transactions: u64,
    /// Number of frauds (TX_FRAUD = 1).
    pub frauds: u64,
    /// Transactions by TX_FRAUD_SCENARIO (0 genuine, 1..=3 the fraud scenarios).
    pub by_scenario: [u64; 4],
    /// Distinct customers.
    pub customers: usize,
    /// Distinct terminals.
    pub terminals: usize,
    /// Customers with at least one fraud.
    pub customers_with_fraud: usize,
    /// Earliest and latest transaction time, if any.
    pub time_range: Option<(Timestamp, Timestamp)>,
    /// Mean amount.
    pub amount_mean: f64,
    /// Standard deviation of the amount (population).
    pub amount_std: f64,
    /// One entry per calendar day that has transactions, in time order.
    pub days: Vec<DaySummary>,
}

impl Summary {
    /// Summarises `tx` in one pass (times need not be sorted).
    pub fn of(tx: &Transactions) -> Summary {
        let mut by_scenario = [0u64; 4];
        let mut frauds = 0u64;
        let mut customer_has_fraud = vec![false; tx.customers.len()];
        let mut days: std::collections::BTreeMap<i64, DaySummary> = Default::default();
        let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
        for i in 0..tx.len() {
            let s = usize::from(tx.scenario[i].min(3));
            by_scenario[s] += 1;
            if tx.fraud[i] != 0 {
                frauds += 1;
                if let Some(flag) = customer_has_fraud.get_mut(tx.customer[i] as usize) {
                    *flag = true;
                }
            }
            let day = tx.time[i].start_of_day();
            let entry = days.entry(day.0).or_insert(DaySummary { day, transactions: 0, by_scenario: [0; 4] });
            entry.transactions += 1;
            entry.by_scenario[s] += 1;
            sum += tx.amount[i];
            sum_sq += tx.amount[i] * tx.amount[i];
        }
        let n = tx.len() as f64;
        let amount_mean = if tx.is_empty() { 0.0 } else { sum / n };
        let amount_std =
            if tx.is_empty() { 0.0 } else { (sum_sq / n - amount_mean * amount_mean).max(0.0).sqrt() };
        let time_range = tx.time.iter().min().copied().zip(tx.time.iter().max().copied());
        Summary {
            transactions: tx.len() as u64,
            frauds,
            by_scenario,
            customers: tx.customers.len(),
            terminals: tx.terminals.len(),
            customers_with_fraud: customer_has_fraud.iter().filter(|&&f| f).count(),
            time_range,
            amount_mean,
            amount_std,
            days: days.into_values().collect(),
        }
    }

    /// Share of transactions that are fraud, 0 when there are none.
    pub fn fraud_share(&self) -> f64 {
        share(self.frauds, self.transactions)
    }

    /// Share of transactions of fraud scenario `s` (1..=3).
    pub fn scenario_share(&self, s: u8) -> f64 {
        share(self.by_scenario[usize::from(s.min(3))], self.transactions)
    }

    /// A table with one line per day (date, transactions, frauds, frauds by scenario).
    pub fn per_day_table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>12} {:>8} {:>8} {:>8} {:>8}\n",
            "day", "transactions", "frauds", "scen. 1", "scen. 2", "scen. 3"
        );
        for d in &self.days {
            let date = d.day.to_string();
            out.push_str(&format!(
                "{:<10} {:>12} {:>8} {:>8} {:>8} {:>8}\n",
                &date[..10],
                d.transactions,
                d.frauds(),
                d.by_scenario[1],
                d.by_scenario[2],
                d.by_scenario[3]
            ));
        }
        out
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = ["", "amount > 220", "compromised terminal", "compromised customer"];
        writeln!(f, "{:<28} {:>12}", "transactions", self.transactions)?;
        writeln!(f, "{:<28} {:>12}", "customers", self.customers)?;
        writeln!(f, "{:<28} {:>12}", "terminals", self.terminals)?;
        writeln!(f, "{:<28} {:>12} ({:.3} %)", "frauds", self.frauds, 100.0 * self.fraud_share())?;
        for s in [scenario::HIGH_AMOUNT, scenario::COMPROMISED_TERMINAL, scenario::COMPROMISED_CUSTOMER] {
            let label = format!("  scenario {s}: {}", names[usize::from(s)]);
            writeln!(
                f,
                "{:<28} {:>12} ({:.3} %)",
                label,
                self.by_scenario[usize::from(s)],
                100.0 * self.scenario_share(s)
            )?;
        }
        writeln!(f, "{:<28} {:>12}", "customers with a fraud", self.customers_with_fraud)?;
        writeln!(f, "{:<28} {:>12.2} (std {:.2})", "amount mean", self.amount_mean, self.amount_std)?;
        match self.time_range {
            Some((first, last)) => {
                writeln!(f, "{:<28} {first} .. {last} ({} days)", "time range", self.days.len())
            }
            None => writeln!(f, "{:<28} (no transactions)", "time range"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frauds_by_scenario_and_day() {
        let mut tx = Transactions::default();
        let day = Timestamp(1_522_540_800);
        for (i, (secs, cust, amount, s)) in
            [(10, "a", 10.0, 0u8), (20, "b", 300.0, 1), (86_410, "a", 50.0, 3), (86_420, "c", 20.0, 0)]
                .into_iter()
                .enumerate()
        {
            tx.transaction_id.push(i as u64);
            tx.time.push(day.plus_seconds(secs));
            tx.customer.push(tx.customers.intern(cust).unwrap());
            tx.terminal.push(tx.terminals.intern("t").unwrap());
            tx.amount.push(amount);
            tx.fraud.push(u8::from(s != 0));
            tx.scenario.push(s);
        }
        let s = Summary::of(&tx);
        assert_eq!((s.transactions, s.frauds, s.customers, s.terminals), (4, 2, 3, 1));
        assert_eq!(s.by_scenario, [2, 1, 0, 1]);
        assert_eq!(s.customers_with_fraud, 2);
        assert_eq!(s.days.len(), 2);
        assert_eq!((s.days[0].transactions, s.days[0].frauds()), (2, 1));
        assert_eq!(s.amount_mean, 95.0);
        assert!(s.to_string().contains("frauds                                  2 (50.000 %)"));
        assert!(s.per_day_table().contains("2018-04-02"));
    }
}
