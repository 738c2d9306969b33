//! Reading and writing real files: round trips through every format, crafted bad files with the
//! exact error each must give, quarantine mode, and arbitrary bytes that must never panic.

use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use exporter::ingest::{
    ColumnMapping, IngestError, IngestOptions, Ingested, OnError, TimeOrder, read_transactions,
};
use exporter::write::{HANDBOOK_COLUMNS, write_transactions};
use exporter::{NoProgress, Transactions};
use flate2::Compression;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;
use scorer::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tempfile::TempDir;

const HEADER: &str = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO";

/// The first five rows of the handbook file (after its header).
const ROWS: [&str; 5] = [
    "0,2018-04-01 00:00:31,596,3156,57.16,31,0,0,0",
    "1,2018-04-01 00:02:10,4961,3412,81.51,130,0,0,0",
    "2,2018-04-01 00:07:56,2,1365,146.0,476,0,0,0",
    "3,2018-04-01 00:09:29,4128,8737,64.49,569,0,0,0",
    "4,2018-04-01 00:10:34,927,9906,50.99,634,0,0,0",
];

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A CSV file of the handbook header and `rows`.
fn csv_file(dir: &TempDir, rows: &[&str]) -> PathBuf {
    let mut text = String::from(HEADER);
    for row in rows {
        text.push('\n');
        text.push_str(row);
    }
    text.push('\n');
    file(dir, "t.csv", text.as_bytes())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn read(path: &Path) -> Result<Ingested, IngestError> {
    read_transactions(path, &IngestOptions::default(), &NoProgress)
}

fn read_with(path: &Path, options: &IngestOptions) -> Result<Ingested, IngestError> {
    read_transactions(path, options, &NoProgress)
}

/// The error message reading `path` gives, with the path itself replaced by `FILE`.
fn error(path: &Path) -> String {
    error_with(path, &IngestOptions::default())
}

fn error_with(path: &Path, options: &IngestOptions) -> String {
    match read_with(path, options) {
        Ok(data) => panic!("{} read without error: {}", path.display(), data.report),
        Err(e) => e.to_string().replace(&path.display().to_string(), "FILE"),
    }
}

/// Replaces row `i` (0-based among `ROWS`) and returns the rows.
fn rows_with(i: usize, row: &str) -> Vec<&str> {
    let mut rows = ROWS.to_vec();
    rows[i] = row;
    rows
}

// ---------------------------------------------------------------------------------------------
// Round trips

fn sample(customer_ids: [&str; 3], origin: Timestamp) -> Transactions {
    let mut tx = Transactions { origin, ..Default::default() };
    let rows: [(u64, &str, usize, usize, f64, u8, u8); 8] = [
        (10, "2018-04-01 00:00:31", 0, 0, 57.16, 0, 0),
        (11, "2018-04-01 00:02:10", 1, 1, 0.1, 0, 0),
        (12, "2018-04-01 00:02:10", 2, 0, 146.0, 1, 1),
        (13, "2018-04-02 23:59:59", 0, 2, 1e-7, 0, 0),
        (17, "2018-04-03 00:00:00", 1, 1, 123_456_789.125, 1, 2),
        (18, "2018-05-01 12:00:00", 2, 2, 0.300_000_000_000_000_04, 1, 3),
        (19, "2018-05-01 12:00:01", 0, 0, 5e15, 0, 0),
        (u64::MAX, "2018-09-30 23:59:57", 1, 2, 0.0, 0, 0),
    ];
    let terminal_ids = ["3156", "3412", "1365"];
    for (id, time, c, t, amount, fraud, scenario) in rows {
        tx.transaction_id.push(id);
        tx.time.push(ts(time));
        tx.customer.push(tx.customers.intern(customer_ids[c]).unwrap());
        tx.terminal.push(tx.terminals.intern(terminal_ids[t]).unwrap());
        tx.amount.push(amount);
        tx.fraud.push(fraud);
        tx.scenario.push(scenario);
    }
    tx
}

fn assert_same(a: &Transactions, b: &Transactions) {
    assert_eq!(a.transaction_id, b.transaction_id);
    assert_eq!(a.time, b.time);
    let texts = |tx: &Transactions| -> Vec<(String, String)> {
        (0..tx.len())
            .map(|i| {
                (tx.customers.id(tx.customer[i]).to_string(), tx.terminals.id(tx.terminal[i]).to_string())
            })
            .collect()
    };
    assert_eq!(texts(a), texts(b));
    let bits = |tx: &Transactions| tx.amount.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(a), bits(b));
    assert_eq!(a.fraud, b.fraud);
    assert_eq!(a.scenario, b.scenario);
    assert_eq!(a.origin, b.origin);
}

#[test]
fn round_trips_every_column_exactly_through_csv_gzip_and_parquet() {
    let dir = TempDir::new().unwrap();
    let integer_ids = sample(["596", "4961", "-2"], ts("2018-04-01 00:00:00"));
    let text_ids = sample(["C-596", "a,b", "say \"hi\""], ts("2018-03-31 12:34:56"));
    for (k, tx) in [integer_ids, text_ids].iter().enumerate() {
        for ext in ["csv", "csv.gz", "parquet"] {
            let path = dir.path().join(format!("round_trip_{k}.{ext}"));
            write_transactions(&path, tx).unwrap();
            let back = read(&path).unwrap();
            assert_eq!((back.report.rows_read, back.report.rejected), (8, 0), "{ext}");
            assert_same(tx, &back.transactions);
        }
    }
}

#[test]
fn writes_the_handbook_layout() {
    let dir = TempDir::new().unwrap();
    let path = csv_file(&dir, &ROWS);
    let tx = read(&path).unwrap().transactions;
    let out = dir.path().join("out.csv");
    write_transactions(&out, &tx).unwrap();
    let mut expected = format!("{HEADER}\n{}\n", ROWS.join("\n"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    assert_eq!(HANDBOOK_COLUMNS.join(","), HEADER);
    // An empty table still has the header.
    write_transactions(&out, &Transactions::default()).unwrap();
    expected = format!("{HEADER}\n");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------
// Whole-file errors

#[test]
fn refuses_a_file_without_a_mapped_column_and_lists_the_columns() {
    let dir = TempDir::new().unwrap();
    let path = file(
        &dir,
        "t.csv",
        b"TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,AMOUNT\n0,2018-04-01 00:00:31,1,2,3\n",
    );
    assert_eq!(
        error(&path),
        "FILE: missing column TX_AMOUNT (amount); the columns are: TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, \
         TERMINAL_ID, AMOUNT; map the field to one of them with `--column amount=COLUMN`"
    );
}

#[test]
fn refuses_an_empty_file() {
    let dir = TempDir::new().unwrap();
    for (name, bytes) in
        [("empty.csv", Vec::new()), ("blank.csv", b"\n\n".to_vec()), ("empty.csv.gz", gzip(b""))]
    {
        let path = file(&dir, name, &bytes);
        assert_eq!(error(&path), "FILE: the file is empty (no header line)", "{name}");
    }
}

#[test]
fn accepts_a_header_without_rows_and_says_so() {
    let dir = TempDir::new().unwrap();
    let path = csv_file(&dir, &[]);
    let data = read(&path).unwrap();
    assert_eq!((data.report.rows_read, data.transactions.len()), (0, 0));
    assert_eq!(data.report.to_string(), "the file has a header but no rows");
}

#[test]
fn refuses_truncated_gzip_wherever_it_is_cut() {
    let dir = TempDir::new().unwrap();
    let mut text = String::from(HEADER);
    for i in 0..20_000u64 {
        text.push_str(&format!("\n{i},2018-04-01 00:00:31,{},{},{}.25,31,0,0,0", i % 97, i % 89, i % 1000));
    }
    text.push('\n');
    let gz = gzip(text.as_bytes());
    let whole = file(&dir, "whole.csv.gz", &gz);
    assert_eq!(read(&whole).unwrap().transactions.len(), 20_000);
    // Inside the gzip header, early and late in the deflate data, and inside the 8-byte trailer.
    for cut in [5, 100, gz.len() / 2, gz.len() - 20, gz.len() - 4, gz.len() - 1] {
        let path = file(&dir, "cut.csv.gz", &gz[..cut]);
        assert_eq!(error(&path), "FILE: the gzip data is truncated (unexpected end of file)", "cut at {cut}");
    }
}

#[test]
fn refuses_data_that_is_not_gzip() {
    let dir = TempDir::new().unwrap();
    let path = file(&dir, "t.csv.gz", format!("{HEADER}\n{}\n", ROWS[0]).as_bytes());
    assert_eq!(error(&path), "FILE: not valid gzip data: invalid gzip header");
}

#[test]
fn names_the_path_of_a_missing_file_and_an_unknown_extension() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("absent.csv");
    assert_eq!(error(&path), "FILE: No such file or directory (os error 2)");
    let path = file(&dir, "t.txt", b"x");
    assert_eq!(error(&path), "FILE: unknown file type; use a name ending in .csv, .csv.gz or .parquet");
}

#[test]
fn refuses_a_file_that_is_not_parquet() {
    let dir = TempDir::new().unwrap();
    let path = file(&dir, "t.parquet", format!("{HEADER}\n").as_bytes());
    assert!(error(&path).starts_with("FILE: cannot read Parquet: "), "{}", error(&path));
}

// ---------------------------------------------------------------------------------------------
// Accepted variations

#[test]
fn accepts_a_utf8_bom_before_the_header() {
    let dir = TempDir::new().unwrap();
    let text = format!("\u{feff}{HEADER}\n{}\n", ROWS.join("\n"));
    let path = file(&dir, "t.csv", text.as_bytes());
    assert_eq!(read(&path).unwrap().transactions.len(), 5);
    let path = file(&dir, "t.csv.gz", &gzip(text.as_bytes()));
    assert_eq!(read(&path).unwrap().transactions.len(), 5);
}

#[test]
fn accepts_quoted_fields_crlf_and_commas_inside_quotes() {
    let dir = TempDir::new().unwrap();
    let text = format!(
        "\"TRANSACTION_ID\",{}\r\n\"0\",\"2018-04-01 00:00:31\",\"a,b\",\"t \"\"1\"\"\",\"57.16\",31,0,0,0\r\n",
        &HEADER["TRANSACTION_ID,".len()..]
    );
    let path = file(&dir, "t.csv", text.as_bytes());
    let tx = read(&path).unwrap().transactions;
    assert_eq!(tx.customers.id(tx.customer[0]), "a,b");
    assert_eq!(tx.terminals.id(tx.terminal[0]), "t \"1\"");
    assert_eq!(tx.amount[0], 57.16);
}

#[test]
fn reads_other_column_names_and_files_without_labels() {
    let dir = TempDir::new().unwrap();
    let path = file(&dir, "t.csv", b"when,id,amt,cust,term,note\n2018-04-01 00:00:31,7,1.5,c1,t1,x\n");
    let mut columns = ColumnMapping::default();
    for assignment in ["time=when", "transaction_id=id", "amount=amt", "customer_id=cust", "terminal_id=term"]
    {
        columns.apply(assignment).unwrap();
    }
    columns.set("fraud", "").unwrap();
    columns.set("scenario", "").unwrap();
    let data = read_with(&path, &IngestOptions { columns, ..Default::default() }).unwrap();
    let tx = &data.transactions;
    assert_eq!((tx.transaction_id[0], tx.amount[0], tx.fraud[0], tx.scenario[0]), (7, 1.5, 0, 0));
    assert_eq!(tx.origin, ts("2018-04-01 00:00:00"));
    assert_eq!(data.report.ignored_columns, ["note"]);
}

#[test]
fn sorts_rows_by_time_then_file_order_when_asked() {
    let dir = TempDir::new().unwrap();
    let rows = [
        "5,2018-04-01 00:10:00,1,1,1.0,600,0,0,0",
        "6,2018-04-01 00:05:00,2,2,2.0,300,0,0,0",
        "7,2018-04-01 00:10:00,3,3,3.0,600,0,0,0",
        "8,2018-04-01 00:01:00,4,4,4.0,60,0,0,0",
    ];
    let path = csv_file(&dir, &rows);
    let options = IngestOptions { time_order: TimeOrder::Sort, ..Default::default() };
    let data = read_with(&path, &options).unwrap();
    assert!(data.report.sorted);
    assert_eq!(data.transactions.transaction_id, [8, 6, 5, 7]);
    assert_eq!(data.transactions.amount, [4.0, 2.0, 1.0, 3.0]);
}

// ---------------------------------------------------------------------------------------------
// Bad rows: each gives its place, column and reason

#[test]
fn names_line_column_and_reason_of_each_kind_of_bad_row() {
    let dir = TempDir::new().unwrap();
    let cases: [(usize, &str, &str); 17] = [
        (
            1,
            "1,2018-04-01 00:02:10,4961,3412,\"12,5\",130,0,0,0",
            "line 3: TX_AMOUNT \"12,5\" is not a number",
        ),
        (1, "1,2018-04-01 00:02:10,4961,3412,-3.5,130,0,0,0", "line 3: TX_AMOUNT \"-3.5\" is negative"),
        (
            1,
            "1,2018-04-01 00:02:10,4961,3412,NaN,130,0,0,0",
            "line 3: TX_AMOUNT \"NaN\" is not a finite number",
        ),
        (
            1,
            "1,2018-04-01 00:02:10,4961,3412,inf,130,0,0,0",
            "line 3: TX_AMOUNT \"inf\" is not a finite number",
        ),
        (1, "1,2018-04-01 00:02:10,4961,3412,,130,0,0,0", "line 3: TX_AMOUNT is empty"),
        (
            1,
            "x1,2018-04-01 00:02:10,4961,3412,1.0,130,0,0,0",
            "line 3: TRANSACTION_ID \"x1\" is not an unsigned 64-bit integer",
        ),
        (
            1,
            "-1,2018-04-01 00:02:10,4961,3412,1.0,130,0,0,0",
            "line 3: TRANSACTION_ID \"-1\" is not an unsigned 64-bit integer",
        ),
        (1, ",2018-04-01 00:02:10,4961,3412,1.0,130,0,0,0", "line 3: TRANSACTION_ID is empty"),
        (1, "1,2018-04-01 00:02:10,,3412,1.0,130,0,0,0", "line 3: CUSTOMER_ID is empty"),
        (1, "1,2018-04-01 00:02:10,4961,,1.0,130,0,0,0", "line 3: TERMINAL_ID is empty"),
        (
            1,
            "1,2018-13-01 00:02:10,4961,3412,1.0,130,0,0,0",
            "line 3: TX_DATETIME \"2018-13-01 00:02:10\" has a date or time field out of range",
        ),
        (
            1,
            "1,01/04/2018 00:02,4961,3412,1.0,130,0,0,0",
            "line 3: TX_DATETIME \"01/04/2018 00:02\" is not a date-time of the form YYYY-MM-DD HH:MM:SS",
        ),
        (1, "1,2018-04-01 00:02:10,4961,3412,1.0,130,0,2,0", "line 3: TX_FRAUD \"2\" is not 0 or 1"),
        (
            1,
            "1,2018-04-01 00:02:10,4961,3412,1.0,130,0,1,4",
            "line 3: TX_FRAUD_SCENARIO \"4\" is not a fraud scenario (0, 1, 2 or 3)",
        ),
        (1, "1,2018-04-01 00:02:10,4961,3412,1.0,130,0,0", "line 3: has 8 fields, the header has 9"),
        (
            4,
            "0,2018-04-01 00:10:34,927,9906,50.99,634,0,0,0",
            "line 6: TRANSACTION_ID 0 already appeared on line 2",
        ),
        (
            2,
            "2,2018-04-01 00:00:10,2,1365,146.0,10,0,0,0",
            "line 4: TX_DATETIME 2018-04-01 00:00:10 is earlier than the previous row's 2018-04-01 00:02:10 (time going backwards)",
        ),
    ];
    for (i, row, expected) in cases {
        let path = csv_file(&dir, &rows_with(i, row));
        assert_eq!(error(&path), format!("FILE: {expected}"));
    }
}

#[test]
fn checks_tx_time_seconds_and_days_against_the_date_time() {
    let dir = TempDir::new().unwrap();
    let path = csv_file(&dir, &rows_with(1, "1,2018-04-01 00:02:10,4961,3412,81.51,100,0,0,0"));
    assert_eq!(
        error(&path),
        "FILE: line 3: TX_TIME_SECONDS 100 disagrees with TX_DATETIME: expected 130 seconds since 2018-04-01 00:00:00"
    );
    let path = csv_file(&dir, &rows_with(1, "1,2018-04-01 00:02:10,4961,3412,81.51,130,1,0,0"));
    assert_eq!(
        error(&path),
        "FILE: line 3: TX_TIME_DAYS 1 disagrees with TX_DATETIME: expected 0 days since 2018-04-01 00:00:00"
    );
    // The origin comes from the first row: its time minus its TX_TIME_SECONDS.
    let path = csv_file(&dir, &["0,2018-04-02 00:00:31,596,3156,57.16,86431,1,0,0"]);
    assert_eq!(read(&path).unwrap().transactions.origin, ts("2018-04-01 00:00:00"));
}

#[test]
fn counts_physical_lines_across_quoted_line_breaks() {
    let dir = TempDir::new().unwrap();
    let rows = [
        ROWS[0],
        "1,2018-04-01 00:02:10,\"two\nlines\",3412,81.51,130,0,0,0",
        "2,2018-04-01 00:07:56,2,1365,x,476,0,0,0",
    ];
    let path = csv_file(&dir, &rows);
    assert_eq!(error(&path), "FILE: line 5: TX_AMOUNT \"x\" is not a number");
}

#[test]
fn names_the_row_of_a_bad_gzip_row_too() {
    let dir = TempDir::new().unwrap();
    let text =
        format!("{HEADER}\n{}\n", rows_with(3, "3,2018-04-01 00:09:29,4128,8737,64.49,569,0,1,9").join("\n"));
    let path = file(&dir, "t.csv.gz", &gzip(text.as_bytes()));
    assert_eq!(error(&path), "FILE: line 5: TX_FRAUD_SCENARIO \"9\" is not a fraud scenario (0, 1, 2 or 3)");
}

#[test]
fn quarantine_keeps_every_rejected_row_with_its_reason_and_the_counts_add_up() {
    let dir = TempDir::new().unwrap();
    let rows = [
        ROWS[0],
        "1,2018-04-01 00:02:10,4961,3412,\"12,5\",130,0,0,0",
        ROWS[2],
        "0,2018-04-01 00:09:29,4128,8737,64.49,569,0,0,0",
        "4,2018-04-01 00:10:34,927,9906,50.99,634,0",
        "5,2018-04-01 00:00:01,927,9906,50.99,1,0,0,0",
    ];
    let path = csv_file(&dir, &rows);
    let quarantine = dir.path().join("rejected.csv");
    let options = IngestOptions { on_error: OnError::Quarantine(quarantine.clone()), ..Default::default() };
    let data = read_with(&path, &options).unwrap();
    let r = &data.report;
    assert_eq!((r.rows_read, r.accepted, r.rejected), (6, 2, 4));
    assert_eq!(r.rows_read, r.accepted + r.rejected);
    assert_eq!(r.quarantine.as_deref(), Some(quarantine.as_path()));
    assert_eq!(data.transactions.transaction_id, [0, 2]);
    let expected = format!(
        "line,reason,{HEADER}\n\
         3,\"TX_AMOUNT \"\"12,5\"\" is not a number\",1,2018-04-01 00:02:10,4961,3412,\"12,5\",130,0,0,0\n\
         5,TRANSACTION_ID 0 already appeared on line 2,0,2018-04-01 00:09:29,4128,8737,64.49,569,0,0,0\n\
         6,\"has 7 fields, the header has 9\",4,2018-04-01 00:10:34,927,9906,50.99,634,0\n\
         7,TX_DATETIME 2018-04-01 00:00:01 is earlier than the previous row's 2018-04-01 00:07:56 (time going backwards),\
         5,2018-04-01 00:00:01,927,9906,50.99,1,0,0,0\n"
    );
    assert_eq!(std::fs::read_to_string(&quarantine).unwrap(), expected);
}

#[test]
fn quarantine_file_cannot_overwrite_the_input() {
    let dir = TempDir::new().unwrap();
    let path = csv_file(&dir, &ROWS);
    let options = IngestOptions { on_error: OnError::Quarantine(path.clone()), ..Default::default() };
    assert_eq!(error_with(&path, &options), "FILE: the quarantine file cannot be the input file");
    assert_eq!(read(&path).unwrap().transactions.len(), 5);
}

#[test]
fn reports_progress_in_bytes_up_to_the_file_size() {
    struct Count(AtomicU64, AtomicU64);
    impl exporter::Progress for Count {
        fn start(&self, _: &str, total: u64) {
            self.0.store(total, Ordering::Relaxed);
        }
        fn advance(&self, units: u64) {
            self.1.fetch_add(units, Ordering::Relaxed);
        }
        fn finish(&self) {}
    }
    let dir = TempDir::new().unwrap();
    let text = format!("{HEADER}\n{}\n", ROWS.join("\n"));
    for (name, bytes) in [("t.csv", text.as_bytes().to_vec()), ("t.csv.gz", gzip(text.as_bytes()))] {
        let path = file(&dir, name, &bytes);
        let count = Count(AtomicU64::new(0), AtomicU64::new(0));
        read_transactions(&path, &IngestOptions::default(), &count).unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), bytes.len() as u64);
        assert_eq!(count.1.load(Ordering::Relaxed), bytes.len() as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// Parquet written by other tools: other types, nulls, unsupported types

fn parquet_file(dir: &TempDir, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let path = dir.path().join("t.parquet");
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

#[test]
fn reads_parquet_with_nanosecond_utc_times_int32_labels_and_boolean_fraud() {
    let dir = TempDir::new().unwrap();
    let t0 = ts("2018-04-01 00:00:31").0 * 1_000_000_000;
    let path = parquet_file(
        &dir,
        vec![
            ("TRANSACTION_ID", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            (
                "TX_DATETIME",
                Arc::new(TimestampNanosecondArray::from(vec![t0, t0 + 1_500_000_000]).with_timezone("UTC")),
            ),
            ("CUSTOMER_ID", Arc::new(StringArray::from(vec!["c1", "c2"]))),
            ("TERMINAL_ID", Arc::new(Int64Array::from(vec![7, 8]))),
            ("TX_AMOUNT", Arc::new(Float64Array::from(vec![1.25, 2.5]))),
            ("TX_FRAUD", Arc::new(BooleanArray::from(vec![false, true]))),
            ("TX_FRAUD_SCENARIO", Arc::new(Int32Array::from(vec![0, 2]))),
        ],
    );
    let tx = read(&path).unwrap().transactions;
    assert_eq!(tx.transaction_id, [1, 2]);
    assert_eq!(tx.time, [ts("2018-04-01 00:00:31"), ts("2018-04-01 00:00:32")]);
    assert_eq!(tx.terminals.id(tx.terminal[1]), "8");
    assert_eq!((tx.fraud.clone(), tx.scenario.clone()), (vec![0, 1], vec![0, 2]));
}

fn handbook_parquet(dir: &TempDir, amount: ArrayRef, customer: ArrayRef) -> PathBuf {
    let t0 = ts("2018-04-01 00:00:31").0 * 1_000_000_000;
    parquet_file(
        dir,
        vec![
            ("TRANSACTION_ID", Arc::new(Int64Array::from(vec![0, 1, 2])) as ArrayRef),
            ("TX_DATETIME", Arc::new(TimestampNanosecondArray::from(vec![t0, t0 + 1, t0 + 2]))),
            ("CUSTOMER_ID", customer),
            ("TERMINAL_ID", Arc::new(Int64Array::from(vec![7, 8, 9]))),
            ("TX_AMOUNT", amount),
            ("TX_FRAUD", Arc::new(Int64Array::from(vec![0, 0, 0]))),
            ("TX_FRAUD_SCENARIO", Arc::new(Int64Array::from(vec![0, 0, 0]))),
        ],
    )
}

#[test]
fn names_the_parquet_row_of_a_bad_value() {
    let dir = TempDir::new().unwrap();
    let customers = || Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef;
    let path = handbook_parquet(&dir, Arc::new(StringArray::from(vec!["1.5", "12,5", "3"])), customers());
    assert_eq!(error(&path), "FILE: row 2: TX_AMOUNT \"12,5\" is not a number");
    let path = handbook_parquet(&dir, Arc::new(Float64Array::from(vec![1.5, 2.0, f64::NAN])), customers());
    assert_eq!(error(&path), "FILE: row 3: TX_AMOUNT \"NaN\" is not a finite number");
    let amounts = || Arc::new(Float64Array::from(vec![1.5, 2.0, 3.0])) as ArrayRef;
    let path =
        handbook_parquet(&dir, amounts(), Arc::new(StringArray::from(vec![Some("a"), None, Some("")])));
    assert_eq!(error(&path), "FILE: row 2: CUSTOMER_ID is null");

    let quarantine = dir.path().join("q.csv");
    let options = IngestOptions { on_error: OnError::Quarantine(quarantine.clone()), ..Default::default() };
    let data = read_with(&path, &options).unwrap();
    assert_eq!((data.report.rows_read, data.report.accepted, data.report.rejected), (3, 1, 2));
    assert_eq!(
        std::fs::read_to_string(&quarantine).unwrap(),
        "row,reason,TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD,TX_FRAUD_SCENARIO\n\
         2,CUSTOMER_ID is null,1,2018-04-01 00:00:31,,8,2,0,0\n\
         3,CUSTOMER_ID is empty,2,2018-04-01 00:00:31,,9,3,0,0\n"
    );
}

#[test]
fn names_the_first_row_of_a_duplicate_parquet_id() {
    let dir = TempDir::new().unwrap();
    let t0 = ts("2018-04-01 00:00:31").0 * 1_000_000_000;
    let path = parquet_file(
        &dir,
        vec![
            ("TRANSACTION_ID", Arc::new(Int64Array::from(vec![5, 6, 5])) as ArrayRef),
            ("TX_DATETIME", Arc::new(TimestampNanosecondArray::from(vec![t0, t0, t0]))),
            ("CUSTOMER_ID", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("TERMINAL_ID", Arc::new(Int64Array::from(vec![7, 8, 9]))),
            ("TX_AMOUNT", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]))),
            ("TX_FRAUD", Arc::new(Int64Array::from(vec![0, 0, 0]))),
            ("TX_FRAUD_SCENARIO", Arc::new(Int64Array::from(vec![0, 0, 0]))),
        ],
    );
    assert_eq!(error(&path), "FILE: row 3: TRANSACTION_ID 5 already appeared on row 1");
}

#[test]
fn names_a_parquet_column_of_an_unsupported_type() {
    let dir = TempDir::new().unwrap();
    let binary: ArrayRef = Arc::new(BinaryArray::from(vec![b"1".as_ref(), b"2", b"3"]));
    let path = handbook_parquet(&dir, binary, Arc::new(Int64Array::from(vec![1, 2, 3])));
    assert_eq!(
        error(&path),
        "FILE: column TX_AMOUNT has type Binary, which cannot hold amount (expected a floating-point, integer or \
         string column)"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let dir = TempDir::new().unwrap();
        let _ = read(&file(&dir, "t.csv", &bytes));
        let _ = read(&file(&dir, "t.csv.gz", &bytes));
        let _ = read(&file(&dir, "t.parquet", &bytes));
    }

    #[test]
    fn arbitrary_rows_after_a_valid_header_never_panic(body in "[0-9a-zA-Z:., \"\n-]{0,600}") {
        let dir = TempDir::new().unwrap();
        let path = file(&dir, "t.csv", format!("{HEADER}\n{body}").as_bytes());
        let quarantine = dir.path().join("q.csv");
        let options = IngestOptions { on_error: OnError::Quarantine(quarantine), time_order: TimeOrder::Sort, ..Default::default() };
        if let Ok(data) = read_with(&path, &options) {
            prop_assert_eq!(data.report.rows_read, data.report.accepted + data.report.rejected);
        }
    }

    #[test]
    fn every_finite_non_negative_amount_round_trips_through_csv(
        amount in proptest::num::f64::POSITIVE | proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO
    ) {
        prop_assume!(amount.is_finite() && amount.is_sign_positive());
        let dir = TempDir::new().unwrap();
        let mut tx = sample(["1", "2", "3"], ts("2018-04-01 00:00:00"));
        tx.amount[3] = amount;
        let path = dir.path().join("t.csv");
        write_transactions(&path, &tx).unwrap();
        let back = read(&path).unwrap().transactions;
        prop_assert_eq!(back.amount[3].to_bits(), amount.to_bits());
    }
}
