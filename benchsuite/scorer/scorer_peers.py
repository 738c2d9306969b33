#!/usr/bin/env python3
"""tollgate's scorer beside other GBDT engines on the same model, one row at a time.

One command prints one table: our 300-tree depth-6 GBDT (native, wasmtime), and the very same
trees in tract-onnx (Rust), tl2cgen's generated C called from C, and through Python: onnxruntime,
tl2cgen and xgboost's inplace_predict. Then instructions per row from callgrind (ours and
tl2cgen's C). Steps, each printed before it runs:

1. `score --export=WORK`: the Rust bench writes its GBDT as an XGBoost JSON model, the feature
   rows the model sees (rows.f32) and our score of each (scores.f64);
2. the model is loaded into xgboost, converted to ONNX (onnxmltools) and compiled to C (treelite
   + tl2cgen, gcc -O3 as tl2cgen's own export_lib does); every engine's scores are checked
   against ours before anything is timed;
3. the Rust bench runs every measurement plus tract on the ONNX file (`--onnx`, `--json`);
4. the Python peers and the C program are timed over the same rows;
5. callgrind counts instructions (`--only=NAME` runs of the Rust bench, the C program).

Run from anywhere; see README.md. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_FEATURES = 15


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("+ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_exe(root: Path) -> Path:
    """Builds the Rust bench (cargo bench --no-run) and returns its executable."""
    out = run(
        ["cargo", "bench", "-p", "scorer-wasm", "--bench", "score", "--no-run", "--message-format=json"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "score" and msg.get("executable"):
            return Path(msg["executable"])
    sys.exit("cargo did not report the score bench's executable")


def per_row(name: str, fn, rows: list, rounds: int) -> list[float]:
    """Nanoseconds per row of `rounds` timed passes of `fn` over `rows` (after one warm-up pass)."""
    for r in rows:
        fn(r)
    ns = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        for r in rows:
            fn(r)
        ns.append((time.perf_counter_ns() - t) / len(rows))
    log(f"{name}: median {statistics.median(ns) / 1000:.2f} us/row")
    return ns


def callgrind(work: Path, name: str, cmd: list, toggle: str, run_line: re.Pattern | None) -> dict:
    """Instructions collected inside `toggle` over a run of `cmd`, with the runs x items it made."""
    out_file = work / f"callgrind.{name}.out"
    proc = run(
        # --smc-check: wasmtime's compiled code lives in anonymous memory.
        ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out_file}",
         f"--toggle-collect={toggle}", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    total = None
    for line in out_file.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    if run_line is not None:
        m = run_line.search(proc.stdout)
        if not m:
            sys.exit(f"{name}: the bench did not print its run count:\n{proc.stdout}")
        runs, items = int(m.group(1)), int(m.group(2))
    else:
        doc = json.loads(proc.stdout)
        runs, items = doc["runs"], doc["rows"]
    per = total / (runs * items)
    log(f"{name}: {total:,} instructions over {runs} x {items} = {per:,.0f} per row")
    return {"instructions": total, "runs": runs, "items": items, "per_row": per}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=HERE.parent.parent, help="the tollgate workspace")
    ap.add_argument("--work", type=Path, help="where models and results go (default <target>/bench/scorer-peers)")
    ap.add_argument("--rounds", type=int, default=15, help="timed passes over the rows, per engine")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--json", type=Path, help="also write every result as JSON")
    args = ap.parse_args()

    import onnxmltools
    import onnxruntime as ort
    import tl2cgen
    import treelite
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    root = args.root.resolve()
    target = root / os.environ.get("CARGO_TARGET_DIR", "target")
    work = (args.work or target / "bench" / "scorer-peers").resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"scorer peers: {load()}")

    # 1. The model and the rows, from the Rust bench.
    exe = bench_exe(root)
    run([exe, f"--export={work}"], cwd=root)
    X = np.fromfile(work / "rows.f32", dtype="<f4").reshape(-1, N_FEATURES)
    ours = np.fromfile(work / "scores.f64", dtype="<f8")
    rows = [X[i : i + 1] for i in range(len(X))]
    log(f"{len(X)} rows of {N_FEATURES} features")

    def check(name: str, scores) -> float:
        diff = float(np.max(np.abs(np.asarray(scores, dtype=np.float64).ravel() - ours)))
        log(f"{name}: max |score - ours| = {diff:.2e}")
        if diff > 1e-5:
            sys.exit(f"{name} does not score the rows as tollgate does (max difference {diff:.2e})")
        return diff

    # 2. The same model in every engine; scores checked before timing.
    versions = {
        "xgboost": xgb.__version__,
        "onnxruntime": ort.__version__,
        "onnxmltools": onnxmltools.__version__,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
    }
    booster = xgb.Booster(model_file=str(work / "model.json"))
    booster.set_param({"nthread": 1})
    diffs = {"xgboost": check("xgboost", booster.inplace_predict(X))}

    # Through the scikit-learn wrapper: given a bare Booster whose covers are all whole numbers (ours
    # are row counts), onnxmltools 1.16 guesses a regression and drops the logistic function.
    classifier = xgb.XGBClassifier()
    classifier.load_model(work / "model.json")
    inputs = [("input", FloatTensorType([None, N_FEATURES]))]
    onnx_model = onnxmltools.convert_xgboost(classifier, initial_types=inputs)
    onnx_path = work / "model.onnx"
    onnx_path.write_bytes(onnx_model.SerializeToString())
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    in_name, prob_name = sess.get_inputs()[0].name, sess.get_outputs()[1].name
    diffs["onnxruntime"] = check("onnxruntime", sess.run([prob_name], {in_name: X})[0][:, 1])

    tl_model = treelite.frontend.load_xgboost_model(str(work / "model.json"), format_choice="json")
    c_dir = work / "tl2cgen"
    shutil.rmtree(c_dir, ignore_errors=True)
    tl2cgen.generate_c_code(tl_model, str(c_dir), params={})
    lib = Path(tl2cgen.create_shared("gcc", str(c_dir), nthread=1))
    predictor = tl2cgen.Predictor(str(lib), nthread=1)
    diffs["tl2cgen"] = check("tl2cgen (Python)", predictor.predict(tl2cgen.DMatrix(X)).ravel())
    c_bench = work / "bench_tl2cgen"
    run(["gcc", "-O3", "-std=c99", "-o", c_bench, HERE / "bench_tl2cgen.c", c_dir / "main.c", f"-I{c_dir}", "-lm"])
    c_cmd = [c_bench, work / "rows.f32", work / "scores.f64", N_FEATURES]

    # 3. Ours and tract, natively and in wasmtime.
    log(f"tollgate: {load()}")
    ours_json = work / "ours.json"
    run([exe, f"--onnx={onnx_path}", f"--json={ours_json}", f"--rounds={args.rounds}"], cwd=root)
    rust = {r["key"]: r for r in json.loads(ours_json.read_text())["results"]}

    # 4. The peers over the same rows.
    log(f"peers: {load()}")
    c_out = json.loads(run([*c_cmd, args.rounds], stdout=subprocess.PIPE, text=True).stdout)
    diffs["tl2cgen C"] = c_out["max_abs_diff"]
    if diffs["tl2cgen C"] > 1e-5:
        sys.exit(f"tl2cgen's C does not score the rows as tollgate does (max difference {diffs['tl2cgen C']:.2e})")
    python_ns = {
        "onnxruntime": per_row("onnxruntime", lambda r: sess.run([prob_name], {in_name: r}), rows, args.rounds),
        "tl2cgen": per_row("tl2cgen", lambda r: predictor.predict(tl2cgen.DMatrix(r)), rows, args.rounds),
        "xgboost": per_row("xgboost", booster.inplace_predict, rows, args.rounds),
    }
    log(f"done timing: {load()}")

    # 5. Instructions.
    instr = {}
    if args.no_callgrind:
        log("callgrind: skipped (--no-callgrind)")
    elif shutil.which("valgrind") is None:
        log("callgrind: skipped, valgrind is not installed (apt-get install valgrind)")
    else:
        ran = re.compile(r"callgrind: run_\w+ ran (\d+) times over (\d+) items")
        for key in ["compiled", "portable", "reference", "score", "wire", "wasm"]:
            instr[key] = callgrind(work, key, [exe, f"--only={key}", "--rounds=2"], "score::run_*", ran)
        instr["tl2cgen C"] = callgrind(work, "tl2cgen", [*c_cmd, 2], "run_rows", None)

    # The table.
    def cell(ns: list[float]) -> tuple[float, float]:
        return statistics.median(ns) / 1000, min(ns) / 1000

    model_us = cell(rust["compiled"]["ns"])[0]
    table = []

    def row(engine: str, how: str, ns: list[float], key: str | None = None, diff: float | None = None):
        med, best = cell(ns)
        ins = instr.get(key, {}).get("per_row") if key else None
        table.append({"engine": engine, "how": how, "median_us": med, "best_us": best, "instructions": ins,
                      "diff": diff})

    labels = {
        "compiled": ("tollgate, model only (compiled trees, AVX2 walk)", "Rust, native"),
        "portable": ("tollgate, model only (compiled trees, scalar walk, as wasm runs it)", "Rust, native"),
        "reference": ("tollgate, model only (reference walk)", "Rust, native"),
        "score": ("tollgate, full score (lookups, features, model, policy)", "Rust, native"),
        "wire": ("tollgate, full score, MessagePack in and out", "Rust, native"),
        "wasm": ("tollgate, full score, MessagePack in and out", "scorer.wasm in wasmtime"),
        "tract": ("tract-onnx 0.23.9, model only (the ONNX file)", "Rust, native"),
    }
    for key, (engine, how) in labels.items():
        if key in rust:
            row(engine, how, rust[key]["ns"], key, rust[key].get("max_abs_diff"))
    row(f"tl2cgen {versions['tl2cgen']}, model only (gcc -O3)", "C, called from C", c_out["ns"], "tl2cgen C",
        diffs["tl2cgen C"])
    row(f"onnxruntime {versions['onnxruntime']}", "Python, sess.run", python_ns["onnxruntime"], None,
        diffs["onnxruntime"])
    row(f"tl2cgen {versions['tl2cgen']} (treelite {versions['treelite']})", "Python, Predictor.predict",
        python_ns["tl2cgen"], None, diffs["tl2cgen"])
    row(f"xgboost {versions['xgboost']}", "Python, inplace_predict", python_ns["xgboost"], None, diffs["xgboost"])

    doc = json.loads(ours_json.read_text())
    print(f"\n300-tree depth-6 GBDT ({doc['nodes']} nodes), 15 features, {len(X)} rows, one row at a time, "
          f"one thread, {args.rounds} rounds; {load()}")
    print("| engine | called from | median us/row | best us/row | instructions/row | max abs score diff vs ours "
          "| time / tollgate model time |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        ins = f"{r['instructions']:,.0f}" if r["instructions"] else ""
        diff = f"{r['diff']:.1e}" if r["diff"] is not None else ""
        print(f"| {r['engine']} | {r['how']} | {r['median_us']:.2f} | {r['best_us']:.2f} | {ins} | {diff} | "
              f"{r['median_us'] / model_us:.1f}x |")
    fastest_py = min(statistics.median(v) for v in python_ns.values()) / 1000
    c_us = statistics.median(c_out["ns"]) / 1000
    print(f"\nmodel: {model_us:.2f} us/row (goal <= 2); fastest peer through Python {fastest_py:.2f} us/row: "
          f"{fastest_py / model_us:.1f}x (goal >= 5x)")
    print(f"tl2cgen's C from C {c_us:.2f} us/row: {c_us / model_us:.2f}x (goal >= 2x)", end="")
    if "compiled" in instr:
        a, b = instr["compiled"]["per_row"], instr["tl2cgen C"]["per_row"]
        print(f"; instructions {b:,.0f} vs ours {a:,.0f}: {b / a:.2f}x (goal >= 2x)")
    else:
        print()
    if "score" in rust and "wasm" in rust:
        s, w = cell(rust["score"]["ns"])[0], cell(rust["wasm"]["ns"])[0]
        wire = cell(rust["wire"]["ns"])[0]
        print(f"full score natively {s:.2f} us (goal <= 3); wasmtime {w:.2f} us = {w / wire:.2f}x the native "
              f"wire path (goal <= 2x)", end="")
        if "wasm" in instr:
            a, b = instr["wire"]["per_row"], instr["wasm"]["per_row"]
            print(f"; instructions {b:,.0f} vs {a:,.0f}: {b / a:.2f}x")
        else:
            print()
    if args.json:
        args.json.write_text(json.dumps({"versions": versions, "rows": len(X), "table": table, "rust": rust,
                                         "instructions": instr, "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
