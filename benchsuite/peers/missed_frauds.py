"""Which frauds does the AUC lose on the handbook's TEST folds? A diagnosis, not a choice: it
picks nothing (the model is the grid's AUC choice, fixed on validation folds before this ran),
it splits the test folds' frauds by the simulator's scenario and measures how well each group is
ranked above the genuine transactions (docs/accuracy.md, "Where the AUC is lost").

Scenario 2 compromises a terminal: every transaction there is a fraud for 28 days. Its labels
are hidden for 7 days (the label delay), so for its first 7 days no feature the snapshot can carry
(the terminal's delayed risk windows end 7 days back) sees anything. Those frauds are "fresh".

    python missed_frauds.py exact.parquet      # about 2 minutes on 2 cores
"""
import pandas as pd
from sklearn.metrics import roc_auc_score

from validation_scan import auc_candidate, cols, df, fold

first_fraud = df[df.TX_FRAUD_SCENARIO == 2].groupby('TERMINAL_ID').TX_DATETIME.min()
since_compromise = df.TX_DATETIME - df.TERMINAL_ID.map(first_fraud)
rows = []
for start in ['2018-08-15', '2018-08-08', '2018-08-01', '2018-07-25']:
    train, assessed = fold(start)
    p = auc_candidate().fit(train[cols], train.TX_FRAUD).predict_proba(assessed[cols])[:, 1]
    y = assessed.TX_FRAUD.to_numpy()
    scenario = assessed.TX_FRAUD_SCENARIO.to_numpy()
    fresh = (scenario == 2) & (since_compromise.loc[assessed.index] < pd.Timedelta(days=7)).to_numpy()
    groups = {'amount over 220 (1)': scenario == 1, 'terminal, first 7 days (2)': fresh,
              'terminal, later (2)': (scenario == 2) & ~fresh, 'customer (3)': scenario == 3}
    row = {'fold': start, 'frauds': int(y.sum()), 'AUC': roc_auc_score(y, p)}
    for name, group in groups.items():
        keep = (y == 0) | group
        row[f'{name} n'] = int(group.sum())
        row[f'{name} AUC'] = roc_auc_score(y[keep], p[keep])
    # The AUC is the fraud-share-weighted mean of the groups' AUCs; with the fresh frauds ranked
    # exactly at chance (0.5) and the rest as they are:
    others = (y == 1) & ~fresh
    row['AUC with fresh at chance'] = (roc_auc_score(y[(y == 0) | others], p[(y == 0) | others]) * others.sum()
                                       + 0.5 * fresh.sum()) / y.sum()
    rows.append(row)
table = pd.DataFrame(rows).set_index('fold')
pd.set_option('display.width', 250)
print(table.round(3).T)
print('mean over the folds:')
print(table.mean(numeric_only=True).round(3))
