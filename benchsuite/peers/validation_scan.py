"""Which models rank highest on the handbook's four VALIDATION folds (never the test folds), with
the handbook-ratios features: a wider GBDT grid than `models::protocol::default_grid` and random
forests, to see whether any setting would lift the validation AUC that picks the AUC candidate
(docs/accuracy.md, "Is there a better AUC candidate?"). It prints validation figures only.

    tollgate features --input ../shared/data/handbook/handbook_transactions.csv.gz -o exact.parquet
    pip install xgboost pandas pyarrow scikit-learn
    python validation_scan.py exact.parquet      # about 15 minutes on 2 cores
"""
import sys
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

df = pd.read_parquet(sys.argv[1])
df['TX_DATETIME'] = pd.to_datetime(df['TX_DATETIME'])
start = pd.Timestamp('2018-04-01')
df['DAY'] = (df.TX_DATETIME - start).dt.days
base = ['TX_AMOUNT', 'TX_DURING_WEEKEND', 'TX_DURING_NIGHT'] \
    + [f'CUSTOMER_ID_{a}_{d}DAY_WINDOW' for d in (1, 7, 30) for a in ('NB_TX', 'AVG_AMOUNT')] \
    + [f'TERMINAL_ID_{a}_{d}DAY_WINDOW' for d in (1, 7, 30) for a in ('NB_TX', 'RISK')]
# The handbook-ratios schema's AmountToMean: the amount over the customer's mean, 0 when that is 0.
for d in (1, 7, 30):
    mean = df[f'CUSTOMER_ID_AVG_AMOUNT_{d}DAY_WINDOW']
    df[f'R{d}'] = np.where(mean != 0, df.TX_AMOUNT / mean.replace(0, 1), 0.0)
cols = base + ['R1', 'R7', 'R30']


def fold(first_day):
    """7 days of training, 7 of delay, 7 assessed; customers with a known fraud dropped per day."""
    d0 = (pd.Timestamp(first_day) - start).days
    train = df[(df.DAY >= d0) & (df.DAY < d0 + 7)]
    known = set(train[train.TX_FRAUD == 1].CUSTOMER_ID)
    days = []
    for day in range(7):
        late = df[df.DAY == d0 + 7 + day - 1]
        known |= set(late[late.TX_FRAUD == 1].CUSTOMER_ID)
        assessed = df[df.DAY == d0 + 14 + day]
        days.append(assessed[~assessed.CUSTOMER_ID.isin(known)])
    return train, pd.concat(days)


valid = [fold(s) for s in ['2018-07-11', '2018-07-04', '2018-06-27', '2018-06-20']]


def gbdt(n, eta, depth, sub, mcw):
    return (f'gbdt {n}/{eta}/{depth} sub={sub} mcw={mcw}',
            lambda: xgb.XGBClassifier(tree_method='exact', random_state=0, n_jobs=2, n_estimators=n,
                                      learning_rate=eta, max_depth=depth, subsample=sub,
                                      colsample_bytree=sub, min_child_weight=mcw))


def auc_candidate(seed=0):
    """The grid's AUC candidate, GBDT 200/0.1/3 sub=0.8, as `models` trains it (base score 0.5)."""
    return xgb.XGBClassifier(tree_method='exact', random_state=seed, n_jobs=2, n_estimators=200, learning_rate=0.1,
                             max_depth=3, subsample=0.8, colsample_bytree=0.8, base_score=0.5)


def forest(n, depth, leaf, features, weight):
    return (f'forest {n} depth={depth} leaf={leaf} features={features} class_weight={weight}',
            lambda: RandomForestClassifier(n, max_depth=depth, min_samples_leaf=leaf, max_features=features,
                                           class_weight=weight, n_jobs=2, random_state=0))


candidates = [gbdt(*p) for p in [
    (100, 0.1, 3, 1, 1), (100, 0.3, 3, 1, 1), (200, 0.1, 3, 0.8, 1), (300, 0.05, 3, 0.8, 1),
    (300, 0.05, 4, 0.8, 1), (500, 0.02, 4, 0.8, 1), (200, 0.1, 4, 0.8, 1), (300, 0.05, 5, 0.8, 1),
    (200, 0.05, 6, 0.8, 1), (400, 0.03, 6, 0.8, 5), (300, 0.05, 4, 0.8, 5), (300, 0.05, 4, 0.6, 1),
    (600, 0.05, 3, 0.8, 1), (1000, 0.02, 3, 0.8, 1)]] + [forest(*p) for p in [
    (100, 20, 1, 'sqrt', None), (200, None, 5, 0.5, None), (200, None, 20, 0.5, None),
    (200, None, 20, 0.5, 'balanced_subsample')]]


def report(name, scores):
    """Prints the mean ± population std of (AUC, AP) pairs over the folds."""
    r = np.array(scores)
    print(f'{name}: validation AUC {r[:, 0].mean():.4f} ± {r[:, 0].std():.3f}, AP {r[:, 1].mean():.4f}', flush=True)


if __name__ == '__main__':
    for name, make in candidates:
        r = []
        for train, assessed in valid:
            p = make().fit(train[cols], train.TX_FRAUD).predict_proba(assessed[cols])[:, 1]
            r.append((roc_auc_score(assessed.TX_FRAUD, p), average_precision_score(assessed.TX_FRAUD, p)))
        report(name, r)
