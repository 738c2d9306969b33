#!/usr/bin/env python3
"""xgboost's GBDT training time on the matrices `cargo bench -p models --bench train` exports.

The Rust bench writes the handbook training and test weeks (features as little-endian f32,
row-major; labels as bytes) and `meta.json` into a folder, runs this script on it, and sets the
timings beside its own. Settings are the Rust bench's: 100 trees, depth 3, eta 0.1, logistic loss,
lambda 1, min_child_weight 1, gamma 0, no subsampling, base_score 0.5 (xgboost 1.x's; 2.0 and later
would fit it), once with exact splits and once with 256-bin histograms. Test-week predictions go
back as little-endian f64 files so that the Rust side scores them with the same metric code.

    python train_peers.py --data DIR --json OUT [--runs 5] [--threads 2,1] [--settings exact,hist256]
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import xgboost as xgb

SETTINGS = {
    # name: xgboost parameters beyond the common ones
    "exact": {"tree_method": "exact"},
    "hist256": {"tree_method": "hist", "max_bin": 256},
}

COMMON = {
    "objective": "binary:logistic",
    "eta": 0.1,
    "max_depth": 3,
    "lambda": 1.0,
    "min_child_weight": 1.0,
    "gamma": 0.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "base_score": 0.5,
    "verbosity": 0,
}
TREES = 100


def load(folder):
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    nf = meta["features"]

    def matrix(name, rows):
        return np.fromfile(os.path.join(folder, name), dtype="<f4").reshape(rows, nf)

    x = matrix("train_x.f32", meta["train_rows"])
    y = np.fromfile(os.path.join(folder, "train_y.u8"), dtype=np.uint8).astype(np.float32)
    test = matrix("test_x.f32", meta["test_rows"])
    return meta, x, y, test


def fit(params, x, y, threads):
    """One fit from the in-memory arrays: DMatrix construction and boosting."""
    began, cpu = time.perf_counter(), time.process_time()
    d = xgb.DMatrix(x, label=y, nthread=threads)
    built = time.perf_counter()
    booster = xgb.train({**params, "nthread": threads}, d, num_boost_round=TREES)
    end = time.perf_counter()
    return booster, end - began, built - began, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder written by the Rust bench")
    parser.add_argument("--json", required=True, help="where the results go")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default="2,1", help="nthread values, comma-separated")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="settings, comma-separated")
    args = parser.parse_args()
    meta, x, y, test = load(args.data)
    print(
        f"xgboost {xgb.__version__}: {x.shape[0]} training rows, {x.shape[1]} features, "
        f"load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    results = []
    for name in args.settings.split(","):
        params = {**COMMON, **SETTINGS[name]}
        for threads in [int(t) for t in args.threads.split(",")]:
            runs, matrix, cpus = [], [], []
            booster = None
            for _ in range(args.runs):
                booster, wall, build, cpu = fit(params, x, y, threads)
                runs.append(wall)
                matrix.append(build)
                cpus.append(cpu)
            # Test predictions of the last fit (every fit is the same model: no sampling).
            pred = booster.predict(xgb.DMatrix(test, nthread=threads)).astype("<f8")
            out = f"pred_xgboost_{name}_{threads}.f64"
            pred.tofile(os.path.join(args.data, out))
            best = min(range(len(runs)), key=runs.__getitem__)
            print(f"  {name} nthread={threads}: best {runs[best]:.3f} s", file=sys.stderr)
            results.append(
                {
                    "setting": name,
                    "threads": threads,
                    "runs_s": runs,
                    "matrix_s": matrix,
                    "cpu_s": cpus,
                    "best_s": runs[best],
                    "median_s": sorted(runs)[len(runs) // 2],
                    "best_cpu_s": cpus[best],
                    "predictions": out,
                    "trees": booster.num_boosted_rounds(),
                }
            )
    with open(args.json, "w") as f:
        json.dump(
            {
                "engine": "xgboost",
                "version": xgb.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
                "load_average": os.getloadavg(),
                "results": results,
            },
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
