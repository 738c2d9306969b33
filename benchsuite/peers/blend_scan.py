"""Would blending a GBDT with a random forest lift the VALIDATION AUC (never the test folds)?
docs/accuracy.md, "Blends of a GBDT and a forest". Two blends of the grid's GBDT (200 trees,
learning rate 0.1, depth 3, sampling 0.8, base score 0.5 as `models` trains it) with a forest
(100 or 300 trees, depth 20, square root of the features), on the handbook's 15 features and on
the handbook-ratios set, over the same four validation folds as validation_scan.py:

- in probability: w * p_gbdt + (1 - w) * p_forest, which the scorer has no model kind for;
- in margin: margin_gbdt + lam * p_forest, which is one tree ensemble the scorer already runs
  (the forest's trees appended to the GBDT's with their leaves scaled by lam / trees);
- in log-odds: margin_gbdt + lam * (mean over the forest's trees of the leaf's log-odds, the leaf's
  fraud share smoothed by alpha = 0.5), also one tree ensemble the scorer runs (forest 100/20 only);
- and, for scale, the GBDT alone with subsampling seeds 0 to 4, and the mean of their margins.

    python blend_scan.py exact.parquet      # about 15 minutes on 2 cores
"""
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from validation_scan import auc_candidate, base, cols, report, valid


def forest_log_odds(forest, z, alpha=0.5):
    """Mean over the trees of log(q / (1 - q)), q the leaf's fraud share smoothed by alpha."""
    out = np.zeros(len(z))
    for tree in forest.estimators_:
        leaf = tree.apply(z.astype(np.float32))
        value = tree.tree_.value[:, 0, :]
        rows = tree.tree_.weighted_n_node_samples
        q = (value[:, 1] / value.sum(axis=1) * rows + alpha) / (rows + 2 * alpha)
        out += np.log(q / (1 - q))[leaf]
    return out / len(forest.estimators_)


for set_name, features in [('15 features', base), ('handbook-ratios', cols)]:
    scores = {}
    for train, assessed in valid:
        x, y = train[features].to_numpy(), train.TX_FRAUD.to_numpy()
        z, truth = assessed[features].to_numpy(), assessed.TX_FRAUD.to_numpy()
        seeds = [auc_candidate(seed).fit(x, y).predict(z, output_margin=True) for seed in range(5)]
        margin = seeds[0]
        p_gbdt = 1 / (1 + np.exp(-margin))
        blends = {'gbdt 200/0.1/3 sub=0.8': p_gbdt}
        for seed, m in enumerate(seeds):
            blends[f'gbdt 200/0.1/3 sub=0.8 seed {seed}'] = m
        blends['mean margin of seeds 0-4'] = np.mean(seeds, axis=0)
        for trees in (100, 300):
            forest = RandomForestClassifier(trees, max_depth=20, max_features='sqrt', n_jobs=2, random_state=0)
            p_forest = forest.fit(x, y).predict_proba(z)[:, 1]
            if trees == 100:
                log_odds = forest_log_odds(forest, z)
                for lam in (0.25, 0.5, 1, 2):
                    blends[f'log-odds gbdt margin + {lam} forest {trees}/20'] = margin + lam * log_odds
            blends[f'forest {trees}/20'] = p_forest
            for w in (0.5, 0.7):
                blends[f'probability {w} gbdt + {1 - w:.1f} forest {trees}/20'] = w * p_gbdt + (1 - w) * p_forest
            for lam in (1, 2, 4, 8):
                blends[f'margin gbdt + {lam} forest {trees}/20'] = margin + lam * p_forest
        for name, p in blends.items():
            scores.setdefault(name, []).append((roc_auc_score(truth, p), average_precision_score(truth, p)))
    for name, r in scores.items():
        report(f'{set_name}, {name}', r)
