#!/usr/bin/env python3
"""The handbook's 15 baseline fraud features with two peer engines, polars and DuckDB, timed.

Each engine loads the full handbook transaction file into memory first (timed on its own), then
computes the 15 features for every transaction, materialising the whole 1.75M x 15 result (a polars
DataFrame; a DuckDB table), `--runs` times (3 by default); best and median are reported. Each
engine's result is then checked against the handbook's golden feature file (join on TRANSACTION_ID):
counts exactly equal, means and risks within 1e-9 relative (the golden file prints 10 significant
digits), and the two engines are checked against each other on every row.

Window semantics (the handbook's, which the Rust exporter reproduces). Rows are taken in file order
(the file is sorted by TX_DATETIME, then TRANSACTION_ID); the script checks that order at load.
- CUSTOMER_ID_NB_TX_{n}DAY_WINDOW / _AVG_AMOUNT_: that customer's transactions in (t - n days, t],
  the current one included. The handbook computes them with pandas' `rolling('nd')`, whose window
  ends at the current *row*: a transaction of the same customer in the same second that comes later
  in the file is not in it. Polars' `rolling_*_by` and DuckDB's `RANGE ... CURRENT ROW` end a
  window at the current *time*: every transaction of that second is in it. So both engines run
  their range windows over an integer key that is unique and in file order within a second
  (seconds * 2R + row position, see "the ordering key" below) instead of TX_DATETIME itself; same
  operators, same cost. The plain TX_DATETIME versions are timed too, as "time windows only" rows
  (`--exact-only` skips them): the 29 same-second pairs of one customer in the file see each other.
- TERMINAL_ID_NB_TX_{n}DAY_WINDOW / _RISK_: that terminal's transactions in
  (t - (n+7) days, t - 7 days], and fraud count / count (0 when the count is 0). No tie issue: the
  window ends 7 days before the transaction.
- TX_AMOUNT (passed through), TX_DURING_WEEKEND: Saturday or Sunday; TX_DURING_NIGHT: hour <= 6.

Golden file: 201,295 rows. Two of them, 1240489 and 1240490 (customer 3414, same second), are in
reverse order there (pandas' default sort is not stable); in file order each sees the other one
transaction off in its three customer windows, so an exact engine matches 201,293 rows and differs
only there, by exactly -1 / +1 transaction in the counts, as the Rust exporter does.

Usage: python features_peers.py [--handbook DIR] [--json OUT] [--runs 3] [--exact-only]
                                [--engines polars,duckdb] | --self-test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

HERE = Path(__file__).resolve().parent
DEFAULT_HANDBOOK = HERE / ".." / ".." / ".." / "shared" / "data" / "handbook"
TRANSACTIONS_FILE = "handbook_transactions.csv.gz"
GOLDEN_FILE = "handbook_features_2018-07-25_to_2018-08-14.csv.gz"
EXPECTED_ROWS = 1_754_155
GOLDEN_ROWS = 201_295

WINDOWS = (1, 7, 30)
DELAY_DAYS = 7
REL_TOL = 1e-9
SAME_SECOND_PAIR = (1_240_489, 1_240_490)
US_PER_DAY = 86_400 * 1_000_000

FEATURES = (
    ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
    + [f"CUSTOMER_ID_{kind}_{n}DAY_WINDOW" for n in WINDOWS for kind in ("NB_TX", "AVG_AMOUNT")]
    + [f"TERMINAL_ID_{kind}_{n}DAY_WINDOW" for n in WINDOWS for kind in ("NB_TX", "RISK")]
)
assert len(FEATURES) == 15

TX_SCHEMA = {
    "TRANSACTION_ID": pl.Int64,
    "TX_DATETIME": pl.Datetime("us"),
    "CUSTOMER_ID": pl.Int64,
    "TERMINAL_ID": pl.Int64,
    "TX_AMOUNT": pl.Float64,
    "TX_TIME_SECONDS": pl.Int64,
    "TX_TIME_DAYS": pl.Int64,
    "TX_FRAUD": pl.Int64,
    "TX_FRAUD_SCENARIO": pl.Int64,
}
DUCKDB_TYPES = {
    "TRANSACTION_ID": "BIGINT",
    "TX_DATETIME": "TIMESTAMP",
    "CUSTOMER_ID": "BIGINT",
    "TERMINAL_ID": "BIGINT",
    "TX_AMOUNT": "DOUBLE",
    "TX_TIME_SECONDS": "BIGINT",
    "TX_TIME_DAYS": "BIGINT",
    "TX_FRAUD": "BIGINT",
    "TX_FRAUD_SCENARIO": "BIGINT",
}


# ------------------------------------------------------------------------------------ the ordering key
#
# pandas ends a customer window at the current row; polars' and DuckDB's time windows end at the
# current time. To get the handbook's windows from a plain range window, order the customer's
# transactions by an integer key that is unique and in file order even within one second:
#     key = (seconds since the first transaction) * 2R + row position,   row position < R.
# A range window over the key of width W = n days * 2R - R then holds exactly the rows of
# (t - n days, t] that are not after the current row: a row n days earlier to the second has a key
# more than W below (positions differ by less than R), one a second later is within W (2R - R > 0
# even with the largest position difference), and a later row of the same second has a larger key.
# This needs whole-second timestamps (the handbook's are; checked at load).


def key_radix(rows: int) -> int:
    """R: a power of two above every row position."""
    return 1 << max(1, rows.bit_length())


def key_range(days: int, radix: int) -> int:
    """W: the inclusive key distance that spans (t - days, t] to the second."""
    return days * 86_400 * 2 * radix - radix


# --------------------------------------------------------------------------------------------- polars


def polars_load(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema=TX_SCHEMA)


def polars_features(tx: pl.DataFrame, file_order_ties: bool = True) -> pl.DataFrame:
    """All 15 features (TRANSACTION_ID first), one row per transaction in file order.

    Customer windows: rolling_*_by(closed="right") over the file-order key (exact) or over
    TX_DATETIME (`file_order_ties=False`: same-second transactions of the customer see each other).
    Terminal windows (t - (n+7) days, t - 7 days] = (t - (n+7) days, t] minus (t - 7 days, t], the
    handbook's own formulation; both end at t, so the current second cancels exactly (integer sums).
    """
    t = "TX_DATETIME"
    one = pl.col("_ONE")  # rolling_*_by needs a column, not a literal, to count rows
    radix = key_radix(tx.height)
    key = (pl.col(t) - pl.col(t).min()).dt.total_seconds() * (2 * radix) + pl.int_range(pl.len(), dtype=pl.Int64)

    def customer_window(days: int) -> tuple[str, str]:
        if file_order_ties:
            return "_KEY", f"{key_range(days, radix) + 1}i"  # closed="right": key > key_i - (W + 1)
        return t, f"{days}d"

    exprs: list[pl.Expr] = [
        pl.col("TRANSACTION_ID"),
        pl.col("TX_AMOUNT"),
        (pl.col(t).dt.weekday() >= 6).cast(pl.Int64).alias("TX_DURING_WEEKEND"),  # Mon=1 .. Sun=7
        (pl.col(t).dt.hour() <= 6).cast(pl.Int64).alias("TX_DURING_NIGHT"),
    ]
    for n in WINDOWS:
        by, size = customer_window(n)
        count = one.rolling_sum_by(by, size).over("CUSTOMER_ID")
        total = pl.col("TX_AMOUNT").rolling_sum_by(by, size).over("CUSTOMER_ID")
        exprs.append(count.alias(f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"))
        exprs.append((total / count).alias(f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"))

    def terminal_sums(days: int) -> tuple[pl.Expr, pl.Expr]:
        return (
            one.rolling_sum_by(t, f"{days}d").over("TERMINAL_ID"),
            pl.col("TX_FRAUD").rolling_sum_by(t, f"{days}d").over("TERMINAL_ID"),
        )

    delay_n, delay_fraud = terminal_sums(DELAY_DAYS)
    for n in WINDOWS:
        all_n, all_fraud = terminal_sums(n + DELAY_DAYS)
        count = all_n - delay_n
        frauds = all_fraud - delay_fraud
        exprs.append(count.alias(f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"))
        exprs.append(
            pl.when(count > 0).then(frauds / count).otherwise(0.0).alias(f"TERMINAL_ID_RISK_{n}DAY_WINDOW")
        )

    lf = tx.lazy().with_columns(pl.lit(1, dtype=pl.Int64).alias("_ONE"))
    if file_order_ties:
        lf = lf.with_columns(key.alias("_KEY"))
    return lf.select(exprs).collect()


# --------------------------------------------------------------------------------------------- DuckDB


def duckdb_load(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in DUCKDB_TYPES.items())
    con.execute(
        f"CREATE OR REPLACE TABLE tx AS SELECT * FROM read_csv('{path}', header = true, "
        f"columns = {{{columns}}}, timestampformat = '%Y-%m-%d %H:%M:%S')"
    )


def _since(days: int) -> str:
    """A RANGE bound that starts a window just after t - days (RANGE bounds are inclusive)."""
    return f"INTERVAL {days * US_PER_DAY - 1} MICROSECONDS PRECEDING"


def duckdb_features_sql(rows: int, file_order_ties: bool = True) -> str:
    """One statement that materialises all 15 features (TRANSACTION_ID first) as table `features`.

    Customer windows: RANGE frames over the file-order key (exact), or over TX_DATETIME with
    INTERVAL bounds (`file_order_ties=False`: same-second transactions of the customer see each
    other). The file-order key's row position is TRANSACTION_ID - min(TRANSACTION_ID): within a
    second the file is in TRANSACTION_ID order (checked at load). Terminal windows: RANGE frames
    BETWEEN INTERVAL (n+7) days (exclusive) AND INTERVAL 7 days (inclusive) PRECEDING.
    """
    radix = key_radix(rows)
    if file_order_ties:
        key_column = (
            f"(epoch(TX_DATETIME)::BIGINT - (SELECT min(epoch(TX_DATETIME))::BIGINT FROM tx)) * {2 * radix}"
            " + (TRANSACTION_ID - (SELECT min(TRANSACTION_ID) FROM tx)) AS k"
        )

        def customer_frame(days: int) -> str:
            return f"ORDER BY k RANGE BETWEEN {key_range(days, radix)} PRECEDING AND CURRENT ROW"
    else:
        key_column = "0 AS k"

        def customer_frame(days: int) -> str:
            return f"ORDER BY TX_DATETIME RANGE BETWEEN {_since(days)} AND CURRENT ROW"

    windows, aggregates = [], []
    for n in WINDOWS:
        windows.append(f"c{n} AS (PARTITION BY CUSTOMER_ID {customer_frame(n)})")
        windows.append(
            f"t{n} AS (PARTITION BY TERMINAL_ID ORDER BY TX_DATETIME "
            f"RANGE BETWEEN {_since(n + DELAY_DAYS)} AND INTERVAL {DELAY_DAYS} DAYS PRECEDING)"
        )
        aggregates += [
            f"count(*) OVER c{n} AS c_n{n}",
            f"sum(TX_AMOUNT) OVER c{n} AS c_sum{n}",
            f"count(*) OVER t{n} AS t_n{n}",
            f"sum(TX_FRAUD) OVER t{n} AS t_fraud{n}",
        ]
    selects = [
        "TRANSACTION_ID",
        "TX_AMOUNT",
        "(isodow(TX_DATETIME) >= 6)::BIGINT AS TX_DURING_WEEKEND",  # Mon=1 .. Sun=7
        "(hour(TX_DATETIME) <= 6)::BIGINT AS TX_DURING_NIGHT",
    ]
    for n in WINDOWS:
        selects += [
            f"c_n{n} AS CUSTOMER_ID_NB_TX_{n}DAY_WINDOW",
            f"c_sum{n} / c_n{n} AS CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW",
        ]
    for n in WINDOWS:
        selects += [
            f"t_n{n} AS TERMINAL_ID_NB_TX_{n}DAY_WINDOW",
            f"CASE WHEN t_n{n} = 0 THEN 0.0 ELSE t_fraud{n} / t_n{n} END AS TERMINAL_ID_RISK_{n}DAY_WINDOW",
        ]
    nl = ",\n    "
    return (
        "CREATE OR REPLACE TABLE features AS\n"
        f"WITH keyed AS (SELECT *, {key_column} FROM tx),\n"
        "w AS (\n  SELECT TRANSACTION_ID, TX_DATETIME, TX_AMOUNT,\n    "
        + nl.join(aggregates)
        + "\n  FROM keyed\n  WINDOW "
        + nl.join(windows)
        + "\n)\nSELECT "
        + nl.join(selects)
        + "\nFROM w"
    )


def duckdb_features(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    con.execute(sql)


def duckdb_fetch(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    # Through the Arrow C stream interface (no pyarrow or numpy needed); not timed.
    return pl.DataFrame(con.sql("SELECT * FROM features ORDER BY TRANSACTION_ID")).select("TRANSACTION_ID", *FEATURES)


# --------------------------------------------------------------------------------------------- checks


def check_file(tx: pl.DataFrame) -> None:
    """What the file-order key relies on: rows sorted by TX_DATETIME then TRANSACTION_ID, whole
    seconds, and TRANSACTION_ID - min(TRANSACTION_ID) below the key radix (DuckDB's row position)."""
    t, tid = pl.col("TX_DATETIME"), pl.col("TRANSACTION_ID")
    out_of_order, fractional, id_span, seconds = tx.select(
        ((t.diff() < pl.duration()) | ((t.diff() == pl.duration()) & (tid.diff() <= 0))).sum().alias("a"),
        (t.dt.microsecond() != 0).sum().alias("b"),
        (tid.max() - tid.min()).alias("c"),
        (t.max() - t.min()).dt.total_seconds().alias("d"),
    ).row(0)
    if out_of_order:
        sys.exit(f"the transaction file is not sorted by TX_DATETIME, TRANSACTION_ID ({out_of_order} rows out of order)")
    if fractional:
        sys.exit(f"{fractional} TX_DATETIME values are not whole seconds; the file-order key needs whole seconds")
    if id_span >= key_radix(tx.height):
        sys.exit(f"TRANSACTION_ID spans {id_span + 1} values, more than the key radix {key_radix(tx.height)}")
    if (seconds + 1) * 2 * key_radix(tx.height) >= 1 << 63:
        sys.exit("the file spans too long a time for a 64-bit file-order key")


def _value_ok(name: str, got: pl.Expr, expected: pl.Expr) -> pl.Expr:
    if "_NB_TX_" in name or name.startswith("TX_DURING_"):
        return got == expected
    return pl.when(expected == 0).then(got == 0).otherwise(((got - expected) / expected).abs() <= REL_TOL)


def compare(features: pl.DataFrame, golden: pl.DataFrame) -> dict:
    """Golden rows matched on every feature; the others, and whether they are the explained pair."""
    joined = golden.join(features, on="TRANSACTION_ID", how="left", suffix="_got")
    missing = joined.filter(pl.col(f"{FEATURES[0]}_got").is_null()).height
    oks = [_value_ok(f, pl.col(f"{f}_got").cast(pl.Float64), pl.col(f)).fill_null(False).alias(f) for f in FEATURES]
    flags = joined.select(pl.col("TRANSACTION_ID"), *oks)
    bad = flags.filter(~pl.all_horizontal(FEATURES))
    differing = []
    for row in bad.iter_rows(named=True):
        tid = row["TRANSACTION_ID"]
        g = joined.filter(pl.col("TRANSACTION_ID") == tid).row(0, named=True)
        differing.append(
            {
                "TRANSACTION_ID": tid,
                "features": {f: {"got": g[f"{f}_got"], "golden": g[f]} for f in FEATURES if not row[f]},
            }
        )
    explained = all(_explained(d) for d in differing) and {d["TRANSACTION_ID"] for d in differing} == set(
        SAME_SECOND_PAIR
    )
    return {
        "compared": joined.height,
        "missing": missing,
        "matching": joined.height - len(differing),
        "differing": differing,
        "only_the_same_second_pair": explained,
    }


def _explained(d: dict) -> bool:
    """The pair's difference in file order: its six customer features, counts off by one."""
    tid = d["TRANSACTION_ID"]
    if tid not in SAME_SECOND_PAIR or len(d["features"]) != 6:
        return False
    shift = -1 if tid == SAME_SECOND_PAIR[0] else 1
    for name, v in d["features"].items():
        if not name.startswith("CUSTOMER_ID_"):
            return False
        if "_NB_TX_" in name and v["got"] != v["golden"] + shift:
            return False
    return True


def compare_engines(a: pl.DataFrame, b: pl.DataFrame) -> int:
    """Rows on which two full results disagree (counts exactly, the rest within 1e-9 relative)."""
    joined = a.join(b, on="TRANSACTION_ID", how="full", suffix="_b", coalesce=True)
    oks = [_value_ok(f, pl.col(f).cast(pl.Float64), pl.col(f"{f}_b").cast(pl.Float64)).fill_null(False) for f in FEATURES]
    return joined.select((~pl.all_horizontal(oks)).sum()).item()


# ----------------------------------------------------------------------------------------- self-test


def self_test(seed: int = 7) -> int:
    """Both engines against a brute-force reference of the handbook's windows on small synthetic data
    built to hit the edges: many same-second transactions of one customer, and transactions exactly
    1, 7, 8, 14, 30 and 37 days apart or one second less (times on a 6-hour grid, a quarter of
    them one second later)."""
    import random
    import tempfile

    rng = random.Random(seed)
    start = 1_522_540_800  # 2018-04-01 00:00:00
    times = sorted(start + 6 * 3600 * rng.randrange(4 * 60) + (rng.random() < 0.25) for _ in range(3000))
    rows = [
        {
            "TRANSACTION_ID": i,
            "TX_DATETIME": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)),
            "CUSTOMER_ID": rng.randrange(20),
            "TERMINAL_ID": rng.randrange(15),
            "TX_AMOUNT": rng.randrange(1, 50_000) / 100,
            "TX_TIME_SECONDS": ts - start,
            "TX_TIME_DAYS": (ts - start) // 86_400,
            "TX_FRAUD": int(rng.random() < 0.1),
            "TX_FRAUD_SCENARIO": 0,
        }
        for i, ts in enumerate(times)
    ]
    day = 86_400
    expected = []
    for i, r in enumerate(rows):
        t = times[i]
        e = {"TRANSACTION_ID": i, "TX_AMOUNT": r["TX_AMOUNT"]}
        wd = time.gmtime(t).tm_wday  # Mon=0
        e["TX_DURING_WEEKEND"], e["TX_DURING_NIGHT"] = int(wd >= 5), int(time.gmtime(t).tm_hour <= 6)
        for n in WINDOWS:
            js = [j for j in range(i + 1) if rows[j]["CUSTOMER_ID"] == r["CUSTOMER_ID"] and times[j] > t - n * day]
            e[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] = len(js)
            e[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = sum(rows[j]["TX_AMOUNT"] for j in js) / len(js)
        for n in WINDOWS:
            lo, hi = t - (n + DELAY_DAYS) * day, t - DELAY_DAYS * day
            js = [j for j in range(len(rows)) if rows[j]["TERMINAL_ID"] == r["TERMINAL_ID"] and lo < times[j] <= hi]
            e[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] = len(js)
            e[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = sum(rows[j]["TX_FRAUD"] for j in js) / len(js) if js else 0.0
        expected.append(e)
    reference = pl.DataFrame(expected, schema={"TRANSACTION_ID": pl.Int64, **{f: pl.Float64 for f in FEATURES}})
    ties = pl.DataFrame(rows).group_by("CUSTOMER_ID", "TX_DATETIME").len().filter(pl.col("len") > 1).height

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.csv"
        pl.DataFrame(rows, schema={k: (pl.String if k == "TX_DATETIME" else v) for k, v in TX_SCHEMA.items()}).write_csv(path)
        tx = polars_load(path)
        check_file(tx)
        con = duckdb.connect()
        duckdb_load(con, path)
        for exact in (True, False):
            duckdb_features(con, duckdb_features_sql(tx.height, exact))
            for name, got in (("polars", polars_features(tx, exact)), ("duckdb", duckdb_fetch(con))):
                bad = compare_engines(got, reference)
                ok = (bad == 0) == exact  # the time-window variants must differ (the data has ties)
                failures += not ok
                label = name if exact else f"{name} (time windows only)"
                print(f"self-test {label}: {bad} of {len(rows)} rows differ from the reference "
                      f"({ties} same-second customer groups) -> {'ok' if ok else 'FAIL'}")
        con.close()
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------- main


def timed(fn, runs: int) -> tuple[list[float], list[float], object]:
    """Wall-clock and process CPU seconds (all threads) of each run, and the last result."""
    times, cpu, result = [], [], None
    for _ in range(runs):
        result = None
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handbook", type=Path, default=DEFAULT_HANDBOOK, help="folder of the handbook files")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--runs", type=int, default=3, help="feature computations per engine (default 3)")
    parser.add_argument(
        "--exact-only",
        action="store_true",
        help="skip the plain time-window variants (same-second peers included, not the handbook's windows)",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check both engines against a brute-force reference on small synthetic data, then exit",
    )
    parser.add_argument(
        "--engines", default="polars,duckdb", help="comma-separated engines to time (default polars,duckdb)"
    )
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or set(engines) - {"polars", "duckdb"}:
        parser.error("--engines takes polars, duckdb or both")
    if args.self_test:
        return self_test()
    handbook = args.handbook.resolve()
    tx_path, golden_path = handbook / TRANSACTIONS_FILE, handbook / GOLDEN_FILE
    for p in (tx_path, golden_path):
        if not p.exists():
            sys.exit(f"missing {p} (pass --handbook DIR)")

    golden = pl.read_csv(
        golden_path,
        columns=["TRANSACTION_ID", *FEATURES],
        schema_overrides={"TRANSACTION_ID": pl.Int64, **{f: pl.Float64 for f in FEATURES}},
    )
    if golden.height != GOLDEN_ROWS:
        print(f"note: golden file has {golden.height} rows, expected {GOLDEN_ROWS}", file=sys.stderr)

    results, outputs = [], {}
    load_before = list(os.getloadavg())
    if load_before[0] > (os.cpu_count() or 1) * 0.5:
        print(f"warning: load average {load_before[0]:.2f} on {os.cpu_count()} CPUs; timings will be noisy", file=sys.stderr)

    def record(engine, variant, version, load_s, times, cpu, features, note, exact):
        check = compare(features, golden)
        label = f"{engine} ({variant})" if variant else engine
        outputs[label] = features
        results.append(
            {
                "engine": engine,
                "variant": variant or "handbook windows",
                "label": label,
                "version": version,
                "load_csv_s": load_s,
                "features_best_s": min(times),
                "features_median_s": statistics.median(times),
                "features_runs_s": times,
                "features_cpu_runs_s": cpu,
                "rows": features.height,
                "rows_matching_golden": check["matching"],
                "golden_rows": check["compared"],
                "golden_rows_missing": check["missing"],
                "differs_only_on_same_second_pair": check["only_the_same_second_pair"],
                "differing": check["differing"],
                "handbook_windows": exact,
                "note": note,
            }
        )
        print(
            f"{label}: best {min(times):.3f} s, median {statistics.median(times):.3f} s "
            f"(CPU {min(cpu):.2f}-{max(cpu):.2f} s); "
            f"{check['matching']:,}/{check['compared']:,} golden rows match"
            + ("" if check["only_the_same_second_pair"] else f"; differing: {[d['TRANSACTION_ID'] for d in check['differing']]}"),
            file=sys.stderr,
        )

    # polars (its load also checks the file, so it runs even when only DuckDB is timed)
    gc.collect()
    start = time.perf_counter()
    tx = polars_load(tx_path)
    pl_load = time.perf_counter() - start
    rows = tx.height
    if rows != EXPECTED_ROWS:
        print(f"note: {rows} transactions, expected {EXPECTED_ROWS}", file=sys.stderr)
    check_file(tx)
    if "polars" in engines:
        print(f"polars {pl.__version__}: loaded {rows:,} rows in {pl_load:.2f} s", file=sys.stderr)
        variants = [
            (True, "", "rolling_sum_by per entity; customer windows over the file-order key, terminal over TX_DATETIME")
        ]
        if not args.exact_only:
            variants.append((False, "time windows only", "rolling_sum_by over TX_DATETIME; same-second peers included"))
        for exact, variant, note in variants:
            times, cpu, feats = timed(lambda: polars_features(tx, exact), args.runs)
            assert feats.shape == (rows, 1 + len(FEATURES)), feats.shape
            record("polars", variant, pl.__version__, pl_load, times, cpu, feats, note, exact)
            del feats
    del tx
    gc.collect()

    # DuckDB (in-memory database, default threads)
    threads = None
    if "duckdb" in engines:
        con = duckdb.connect()
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        start = time.perf_counter()
        duckdb_load(con, tx_path)
        db_load = time.perf_counter() - start
        print(f"duckdb {duckdb.__version__} ({threads} threads): loaded in {db_load:.2f} s", file=sys.stderr)
        variants = [
            (True, "", "RANGE window frames; customer over the file-order key, terminal BETWEEN INTERVALs over TX_DATETIME")
        ]
        if not args.exact_only:
            variants.append((False, "time windows only", "RANGE BETWEEN INTERVAL frames; same-second peers included"))
        for exact, variant, note in variants:
            sql = duckdb_features_sql(rows, exact)
            times, cpu, _ = timed(lambda: duckdb_features(con, sql), args.runs)
            record("duckdb", variant, duckdb.__version__, db_load, times, cpu, duckdb_fetch(con), note, exact)
        con.close()

    disagreeing = None
    if "polars" in outputs and "duckdb" in outputs:
        disagreeing = compare_engines(outputs["polars"], outputs["duckdb"])
        print(f"polars vs duckdb on all {rows:,} rows: {disagreeing} rows disagree", file=sys.stderr)
    outputs.clear()

    print()
    print("| engine | load CSV (s) | features (s, best of %d) | median | rows matching golden |" % args.runs)
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['engine']} {r['version']}{' (' + r['variant'] + ')' if not r['handbook_windows'] else ''} | {r['load_csv_s']:.2f} | {r['features_best_s']:.3f} | "
            f"{r['features_median_s']:.3f} | {r['rows_matching_golden']:,} / {r['golden_rows']:,} |"
        )
    print()
    for r in results:
        if r["differs_only_on_same_second_pair"]:
            print(f"{r['label']}: differs from golden only on the same-second pair {SAME_SECOND_PAIR}, as the Rust exporter does")
        else:
            print(
                f"{r['label']}: differs from golden on {[d['TRANSACTION_ID'] for d in r['differing']]}"
                + (" (same-second transactions of one customer see each other)" if not r["handbook_windows"] else "")
            )
    if disagreeing is not None:
        print(f"polars vs duckdb (handbook windows), all {rows:,} rows: {disagreeing} rows disagree")
    print(f"load average before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")

    if args.json:
        doc = {
            "benchmark": "handbook 15 baseline features, peers",
            "transactions": rows,
            "load_average_before_after": [load_before, list(os.getloadavg())],
            "runs": args.runs,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "polars_threads": pl.thread_pool_size() if "polars" in engines else None,
            "duckdb_threads": threads,
            "polars_vs_duckdb_rows_disagreeing": disagreeing,
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    ok = all(r["differs_only_on_same_second_pair"] for r in results if r["handbook_windows"])
    return 0 if ok and not disagreeing else 1


if __name__ == "__main__":
    sys.exit(main())
