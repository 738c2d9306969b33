"""The exploratory sketch behind the handbook-ratios schema (docs/accuracy.md, "The handbook-ratios
schema"): xgboost on the exporter's exact features over the handbook's prequential folds, with and
without the amount-to-customer-mean ratios. It prints validation AND test figures (which is why
docs/accuracy.md says the feature set saw the test folds once); its card precision is approximate.

    tollgate features ../shared/data/handbook/handbook_transactions.csv.gz -o exact.parquet
    pip install xgboost pandas pyarrow scikit-learn
    python feature_sketch.py exact.parquet
"""
import sys, datetime, numpy as np, pandas as pd, xgboost as xgb
from sklearn.metrics import roc_auc_score, average_precision_score
df = pd.read_parquet(sys.argv[1])
df['TX_DATETIME'] = pd.to_datetime(df['TX_DATETIME'])
start = pd.Timestamp('2018-04-01')
df['DAY'] = (df.TX_DATETIME - start).dt.days
base = ['TX_AMOUNT','TX_DURING_WEEKEND','TX_DURING_NIGHT'] + [f'CUSTOMER_ID_{a}_{d}DAY_WINDOW' for d in (1,7,30) for a in ('NB_TX','AVG_AMOUNT')] + [f'TERMINAL_ID_{a}_{d}DAY_WINDOW' for d in (1,7,30) for a in ('NB_TX','RISK')]
for d in (1,7,30):
    df[f'R{d}'] = df.TX_AMOUNT / df[f'CUSTOMER_ID_AVG_AMOUNT_{d}DAY_WINDOW']
extra = {'base': base, 'ratio30': base+['R30'], 'ratio_all': base+['R1','R7','R30']}
def cp_at_k(t, k=100):
    out=[]
    for d, g in t.groupby('DAY'):
        c = g.groupby('CUSTOMER_ID').agg(s=('p','max'), f=('TX_FRAUD','max')).sort_values('s', ascending=False)
        out.append(c.f.head(k).mean())
    return np.mean(out)
def split(s):
    s = pd.Timestamp(s); d0 = (s-start).days
    tr = df[(df.DAY>=d0)&(df.DAY<d0+7)]
    known = set(tr[tr.TX_FRAUD==1].CUSTOMER_ID); tests=[]
    for day in range(7):
        td = df[df.DAY==d0+14+day]
        dl = df[df.DAY==d0+7+day-1]
        known |= set(dl[dl.TX_FRAUD==1].CUSTOMER_ID)
        tests.append(td[~td.CUSTOMER_ID.isin(known)])
    return tr, pd.concat(tests)
folds = {'valid':['2018-07-11','2018-07-04','2018-06-27','2018-06-20'], 'test':['2018-08-15','2018-08-08','2018-08-01','2018-07-25']}
params = [dict(n_estimators=200,learning_rate=0.1,max_depth=3,subsample=0.8,colsample_bytree=0.8), dict(n_estimators=100,learning_rate=0.1,max_depth=3), dict(n_estimators=300,learning_rate=0.1,max_depth=6,subsample=0.8,colsample_bytree=0.8)]
for name, cols in extra.items():
  for p in params:
    for fs, starts in folds.items():
        r=[]
        for s in starts:
            tr, te = split(s)
            m = xgb.XGBClassifier(tree_method='exact', random_state=0, n_jobs=2, **p).fit(tr[cols], tr.TX_FRAUD)
            te = te.copy(); te['p'] = m.predict_proba(te[cols])[:,1]
            r.append((roc_auc_score(te.TX_FRAUD, te.p), average_precision_score(te.TX_FRAUD, te.p), cp_at_k(te)))
        r=np.array(r); print(name, p['n_estimators'], p['max_depth'], p.get('subsample',1), fs, 'AUC %.3f±%.3f AP %.3f±%.3f CP %.3f±%.3f'%(r[:,0].mean(),r[:,0].std(),r[:,1].mean(),r[:,1].std(),r[:,2].mean(),r[:,2].std()), flush=True)
