//! The `tollgate` binary end to end on real files: simulate, ingest, features, keys, snapshot
//! build and inspect; and the errors a user sees for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).current_dir(dir).output().expect("run tollgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn simulates_ingests_builds_features_and_a_verifiable_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = tollgate(
        d,
        &[
            "simulate",
            "--seed",
            "3",
            "--days",
            "40",
            "--customers",
            "300",
            "--terminals",
            "600",
            "-o",
            "tx.parquet",
        ],
    );
    assert!(sim.status.success(), "{}", stderr(&sim));
    assert!(stdout(&sim).contains("transactions"));

    let ingest = tollgate(d, &["ingest", "tx.parquet", "--per-day"]);
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    let text = stdout(&ingest);
    assert!(text.contains("rejected                                0"), "{text}");
    assert!(text.contains("2018-05-10"), "per-day table: {text}");

    let features = tollgate(
        d,
        &[
            "features",
            "--input",
            "tx.parquet",
            "-o",
            "features.csv",
            "--snapshot-every",
            "1h",
            "--compare-exact",
        ],
    );
    assert!(features.status.success(), "{}", stderr(&features));
    let csv = std::fs::read_to_string(d.join("features.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with("TERMINAL_ID_NB_TX_30DAY_WINDOW,TERMINAL_ID_RISK_30DAY_WINDOW"), "{header}");
    assert_eq!(header.split(',').count(), 9 + 14, "transaction columns + features but TX_AMOUNT");
    assert!(stdout(&features).contains("| CUSTOMER_ID_NB_TX_1DAY_WINDOW |"));

    let keys = tollgate(d, &["keys", "new", "--out", "keys"]);
    assert!(keys.status.success(), "{}", stderr(&keys));
    let again = tollgate(d, &["keys", "new", "--out", "keys"]);
    assert!(!again.status.success(), "must not overwrite keys silently");
    assert!(stderr(&again).contains("already exists; pass --force"), "{}", stderr(&again));

    let build = tollgate(d, &["snapshot", "build", "tx.parquet", "--as-of", "2018-05-01", "-o", "snap.tgs"]);
    assert!(build.status.success(), "{}", stderr(&build));
    assert!(stdout(&build).contains("rows of 48 bytes"), "{}", stdout(&build));

    let inspect = tollgate(
        d,
        &["snapshot", "inspect", "snap.tgs", "--entity", "CUSTOMER_ID=1", "--entity", "CUSTOMER_ID=ghost"],
    );
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    assert!(text.contains("as of              2018-05-01 00:00:00"), "{text}");
    // No drift reference: before 2018-05-08 the 37 days that the windows reach are still filling.
    assert!(text.contains("drift reference    (none)"), "{text}");
    assert!(text.contains("not in the snapshot"), "{text}");

    // In parts: the same entity found, the parts named; a part size too small is refused.
    let build_in_parts = |bytes: &str, out: &str| {
        tollgate(
            d,
            &["snapshot", "build", "tx.parquet", "--as-of", "2018-05-01", "--part-bytes", bytes, "-o", out],
        )
    };
    let parted = build_in_parts("4096", "parts.tgs");
    assert!(parted.status.success(), "{}", stderr(&parted));
    let inspect = tollgate(d, &["snapshot", "inspect", "parts.tgs", "--entity", "CUSTOMER_ID=1"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let parted_text = stdout(&inspect);
    assert!(parted_text.contains(" parts"), "{parted_text}");
    let aggregates = |t: &str| {
        let after = t.split("CUSTOMER_ID 1 ").nth(1)?;
        after.split("\nCUSTOMER_ID ghost").next().map(|s| s.trim().to_string())
    };
    assert_eq!(aggregates(&parted_text), aggregates(&text), "the same rows, in parts or whole");
    let tiny = build_in_parts("100", "tiny.tgs");
    assert!(!tiny.status.success() && stderr(&tiny).contains("--part-bytes 100"), "{}", stderr(&tiny));

    // As of the end of the history, the reference covers the days after the windows filled.
    let latest = tollgate(d, &["snapshot", "build", "tx.parquet", "-o", "latest.tgs"]);
    assert!(latest.status.success(), "{}", stderr(&latest));
    assert!(stdout(&latest).contains("drift reference  "), "{}", stdout(&latest));
    let inspect = tollgate(d, &["snapshot", "inspect", "latest.tgs"]);
    let text = stdout(&inspect);
    assert!(text.contains("2018-05-08") && text.contains("15 feature distributions"), "{text}");

    // Another key pair does not verify it.
    let other = tollgate(d, &["keys", "new", "--out", "other"]);
    assert!(other.status.success());
    let refused = tollgate(d, &["snapshot", "inspect", "snap.tgs", "--key", "other/edge.key"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("which this edge does not trust"), "{}", stderr(&refused));
}

#[test]
fn simulate_shifts_parameters_and_names_a_bad_shift() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = |shift: Option<&str>, out: &str| {
        let mut args = vec!["simulate", "--days", "5", "--customers", "50", "--terminals", "100", "-o", out];
        if let Some(s) = shift {
            args.extend(["--shift", s]);
        }
        tollgate(d, &args)
    };
    for (i, shift) in [None, Some("amount=3x@day2..3")].into_iter().enumerate() {
        let out = sim(shift, &format!("tx{i}.csv"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (plain, shifted) = (
        std::fs::read_to_string(d.join("tx0.csv")).unwrap(),
        std::fs::read_to_string(d.join("tx1.csv")).unwrap(),
    );
    assert_eq!(plain.lines().count(), shifted.lines().count());
    assert_ne!(plain, shifted, "amounts of day 2 are tripled");
    let bad = sim(Some("amount=2x@40"), "bad.csv");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("days \"40\": expected dayN"), "{}", stderr(&bad));
    let help = tollgate(d, &["simulate", "--help"]);
    assert!(stdout(&help).contains("amount=2x@day40..41"), "{}", stdout(&help));
}

#[test]
fn bad_rows_are_named_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let header = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD,TX_FRAUD_SCENARIO";
    let rows = [
        "0,2018-04-01 00:00:31,1,2,10.5,0,0",
        "1,2018-04-01 00:01:00,1,2,\"12,5\",0,0",
        "2,2018-04-01 00:02:00,3,2,7,0,0",
    ];
    std::fs::write(d.join("tx.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();

    let failed = tollgate(d, &["ingest", "tx.csv"]);
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("line 3: TX_AMOUNT \"12,5\" is not a number"), "{}", stderr(&failed));

    let quarantined = tollgate(d, &["ingest", "tx.csv", "--on-error", "quarantine", "bad.csv"]);
    assert!(quarantined.status.success(), "{}", stderr(&quarantined));
    let text = stdout(&quarantined);
    assert!(text.contains("rows read                               3"), "{text}");
    assert!(text.contains("rejected                                1"), "{text}");
    let bad = std::fs::read_to_string(d.join("bad.csv")).unwrap();
    assert!(bad.contains("is not a number"), "{bad}");
}

#[test]
fn help_explains_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let help = tollgate(dir.path(), &["--help"]);
    let text = stdout(&help);
    for command in ["simulate", "ingest", "features", "keys", "snapshot"] {
        assert!(text.contains(command), "{command} missing from --help: {text}");
    }
    let unknown = tollgate(
        dir.path(),
        &["simulate", "--output", "x.txt", "--days", "1", "--customers", "1", "--terminals", "1"],
    );
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("unknown file type"), "{}", stderr(&unknown));
}
