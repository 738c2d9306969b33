//! Reads the full handbook transaction file (1,754,155 rows) and checks the figures its README
//! states. The file lives outside the repository; set TOLLGATE_SKIP_HANDBOOK=1 where it is absent.

use exporter::ingest::{IngestOptions, read_transactions};
use scorer::Timestamp;

#[test]
fn reads_the_whole_handbook_file_with_its_published_counts() {
    let Some(path) = handbook_data::required(handbook_data::TRANSACTIONS) else { return };
    let data = read_transactions(&path, &IngestOptions::default(), &exporter::NoProgress).unwrap();
    let tx = &data.transactions;
    assert_eq!(data.report.rows_read, 1_754_155);
    assert_eq!(data.report.accepted, 1_754_155);
    assert_eq!(data.report.rejected, 0);
    assert!(!data.report.sorted);
    assert_eq!(tx.len(), 1_754_155);
    assert_eq!(tx.fraud.iter().map(|&f| u64::from(f)).sum::<u64>(), 14_681);
    assert_eq!(tx.customers.len(), 4_990);
    assert_eq!(tx.terminals.len(), 10_000);
    let first: Timestamp = "2018-04-01 00:00:31".parse().unwrap();
    let last: Timestamp = "2018-09-30 23:59:57".parse().unwrap();
    assert_eq!((tx.time[0], tx.time[tx.len() - 1]), (first, last));
    assert_eq!(tx.origin, "2018-04-01 00:00:00".parse().unwrap());
    // Spot checks against `zcat | head`: row 2 is `2,2018-04-01 00:07:56,2,1365,146.0,476,0,0,0`.
    assert_eq!(tx.transaction_id[2], 2);
    assert_eq!(tx.customers.id(tx.customer[2]), "2");
    assert_eq!(tx.terminals.id(tx.terminal[2]), "1365");
    assert_eq!(tx.amount[2], 146.0);
    assert_eq!(tx.time_seconds(2), 476);
}
