#!/usr/bin/python3
"""Generate the XGBoost model zoo: small models covering every objective, booster and model
option XGBoost 1.7.4 ships, each saved as model.json and model.ubj with its inputs and
XGBoost's own outputs.

Usage: /usr/bin/python3 generate.py [OUT_DIR [NAME ...]]   (default: this directory, all)

Trained with Debian's python3-xgboost 1.7.4 and numpy alone, single-threaded, fixed seeds.
Each model directory holds:
  model.json, model.ubj      the same booster saved both ways
  input.csv                  rows to score, comma-separated, empty field = NaN; float32
                             values written with %.9g; the last BOUNDARY rows have ~half of
                             their numeric cells replaced by a split threshold of the model
  expected_raw.csv           predict(output_margin=True), %.9g, one column per output
  expected_transformed.csv   predict(), %.9g
  params.json                the training parameters and rounds (for the reader)
"""
import json, os, sys
import numpy as np
import xgboost as xgb

N_TRAIN = 400
N_TEST = 60
BOUNDARY = 20
NFEAT = 6


def fmt(v):
    return '' if np.isnan(v) else '%.9g' % v


def write_rows(path, X):
    with open(path, 'w') as f:
        for row in X:
            f.write(','.join(fmt(v) for v in row) + '\n')


def write_out(path, M):
    M = np.asarray(M, dtype=np.float32)
    if M.ndim == 1:
        M = M[:, None]
    with open(path, 'w') as f:
        for row in M:
            f.write(','.join('%.9g' % v for v in row) + '\n')


def data(seed, nan_frac=0.1, n=N_TRAIN + N_TEST, nfeat=NFEAT):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, nfeat)).astype(np.float32)
    X[:, 1] = np.round(X[:, 1] * 3)  # a coarse column: many ties at thresholds
    s = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] - np.abs(X[:, 3]) + 0.3 * rng.normal(size=n)
    X[rng.random(X.shape) < nan_frac] = np.nan
    return rng, X, s.astype(np.float64)


def thresholds(model_json):
    """Numerical split thresholds per feature, from every tree of a gbtree/dart model."""
    gb = model_json['learner']['gradient_booster']
    if gb['name'] == 'gblinear':
        return {}
    trees = (gb['gbtree'] if gb['name'] == 'dart' else gb)['model']['trees']
    per = {}
    for t in trees:
        st = t.get('split_type') or [0] * len(t['left_children'])
        for i, lc in enumerate(t['left_children']):
            if lc != -1 and st[i] == 0:
                per.setdefault(t['split_indices'][i], set()).add(np.float32(t['split_conditions'][i]))
    return {f: sorted(v) for f, v in per.items()}


def boundary(X, thr, rng, skip=()):
    X = X.copy()
    for r in range(len(X) - BOUNDARY, len(X)):
        for f, ts in thr.items():
            if f in skip or np.isnan(X[r, f]) or rng.random() < 0.5:
                continue
            t = ts[rng.integers(len(ts))]
            k = rng.integers(3)  # the threshold, or one float32 ulp below / above it
            X[r, f] = t if k == 0 else np.nextafter(t, np.float32(-np.inf if k == 1 else np.inf))
    return X


MODELS = {}


def model(name):
    def reg(fn):
        MODELS[name] = fn
        return fn
    return reg


def simple(name, objective, label, rounds=10, extra=None, nan_frac=0.1, seed=None, dm=None, booster=None):
    """A model on the common data: label(rng, s) gives the label from the latent score."""
    seed = len(MODELS) + 1 if seed is None else seed  # fixed by the order of registration

    def build():
        rng, X, s = data(seed, nan_frac)
        y = None if label is None else label(rng, s)
        p = {'objective': objective, 'eta': 0.3, 'seed': 0, 'nthread': 1}
        if booster:
            p['booster'] = booster
        if booster != 'gblinear':
            p['max_depth'] = 3
        p.update(extra or {})
        return X, y, p, rounds, dm
    MODELS[name] = build


def run(name, out_dir):
    X, y, p, rounds, dm = MODELS[name]()
    Xtr, Xte = X[:N_TRAIN], X[N_TRAIN:]
    kw = dict(dm or {})
    prep = kw.pop('prep', None)
    dtrain = xgb.DMatrix(Xtr, label=None if y is None else y[:N_TRAIN], missing=np.nan, **kw)
    if prep:
        prep(dtrain, slice(0, N_TRAIN))
    bst = xgb.train(p, dtrain, num_boost_round=rounds)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    bst.save_model(os.path.join(d, 'model.json'))
    bst.save_model(os.path.join(d, 'model.ubj'))
    mj = json.load(open(os.path.join(d, 'model.json')))
    cats = {i for i, t in enumerate(kw.get('feature_types') or []) if t == 'c'}
    Xte = boundary(Xte, thresholds(mj), np.random.default_rng(99), skip=cats)
    dtest = xgb.DMatrix(Xte, missing=np.nan, **kw)
    write_rows(os.path.join(d, 'input.csv'), Xte)
    write_out(os.path.join(d, 'expected_raw.csv'), bst.predict(dtest, output_margin=True))
    write_out(os.path.join(d, 'expected_transformed.csv'), bst.predict(dtest))
    with open(os.path.join(d, 'params.json'), 'w') as f:
        pp = dict(p)
        pp['num_boost_round'] = rounds
        if kw:
            pp['dmatrix'] = {k: v for k, v in kw.items()}
        json.dump(pp, f, indent=1, sort_keys=True)
        f.write('\n')


# Labels drawn from the latent score s.
def cont(rng, s):
    return s
def binary(rng, s):
    return (s + 0.5 * rng.normal(size=len(s)) > 0).astype(np.float32)
def positive(rng, s):
    return np.exp(0.5 * s) + 0.01
def counts(rng, s):
    return rng.poisson(np.exp(0.5 * s)).astype(np.float32)
def classes(rng, s):
    return np.digitize(s, [-0.7, 0.5]).astype(np.float32)
def relevance(rng, s):
    return np.digitize(s, [-0.5, 0.3, 1.0]).astype(np.float32)
def cox(rng, s):
    t = rng.exponential(np.exp(-0.5 * s)) + 0.01
    return np.where(rng.random(len(s)) < 0.2, -t, t)  # negative: right-censored


def groups(dm, sl):
    n = sl.stop - sl.start
    dm.set_group([20] * (n // 20))


def aft_bounds(dm, sl):
    rng = np.random.default_rng(5)
    n = sl.stop - sl.start
    lo = rng.exponential(2.0, size=n) + 0.1
    hi = np.where(rng.random(n) < 0.3, np.inf, lo)  # 30% right-censored
    dm.set_float_info('label_lower_bound', lo)
    dm.set_float_info('label_upper_bound', hi)


simple('reg_squarederror', 'reg:squarederror', cont)
simple('reg_squarederror_base2', 'reg:squarederror', cont, extra={'base_score': 2.0})
simple('reg_squaredlogerror', 'reg:squaredlogerror', positive)
simple('reg_logistic', 'reg:logistic', lambda r, s: 1 / (1 + np.exp(-s)))
simple('reg_pseudohubererror', 'reg:pseudohubererror', cont, extra={'huber_slope': 0.8})
simple('reg_absoluteerror', 'reg:absoluteerror', cont)
simple('reg_gamma', 'reg:gamma', positive)
simple('reg_tweedie', 'reg:tweedie', counts, extra={'tweedie_variance_power': 1.4})
simple('count_poisson', 'count:poisson', counts, extra={'base_score': 1.5})
simple('binary_logistic', 'binary:logistic', binary)
simple('binary_logistic_base03', 'binary:logistic', binary, extra={'base_score': 0.3})
simple('binary_logitraw', 'binary:logitraw', binary, extra={'base_score': 0.3})
simple('binary_hinge', 'binary:hinge', binary)
simple('multi_softmax', 'multi:softmax', classes, rounds=6, extra={'num_class': 3})
simple('multi_softprob', 'multi:softprob', classes, rounds=6, extra={'num_class': 3})
simple('rank_pairwise', 'rank:pairwise', relevance, dm={'prep': groups})
simple('rank_ndcg', 'rank:ndcg', relevance, dm={'prep': groups})
simple('rank_map', 'rank:map', binary, dm={'prep': groups})
simple('survival_cox', 'survival:cox', cox)
simple('survival_aft', 'survival:aft', None, dm={'prep': aft_bounds},
       extra={'aft_loss_distribution': 'normal', 'aft_loss_distribution_scale': 1.2})
# Boosters.
simple('dart_binary', 'binary:logistic', binary, rounds=15, booster='dart',
       extra={'rate_drop': 0.3, 'skip_drop': 0.0, 'sample_type': 'weighted', 'normalize_type': 'forest'})
simple('dart_regression', 'reg:squarederror', cont, rounds=15, booster='dart',
       extra={'rate_drop': 0.2, 'one_drop': 1})
simple('gblinear_regression', 'reg:squarederror', cont, booster='gblinear', extra={'lambda': 0.1})
simple('gblinear_binary', 'binary:logistic', binary, booster='gblinear', extra={'updater': 'coord_descent'})
simple('gblinear_softprob', 'multi:softprob', classes, booster='gblinear', extra={'num_class': 3})
simple('gblinear_poisson', 'count:poisson', counts, booster='gblinear')
# Tree options.
simple('nan_heavy', 'binary:logistic', binary, nan_frac=0.6, extra={'max_depth': 4})
simple('lossguide_depth0', 'reg:squarederror', cont, extra={'tree_method': 'hist', 'grow_policy': 'lossguide',
                                                            'max_depth': 0, 'max_leaves': 12})
simple('random_forest', 'binary:logistic', binary, rounds=1, extra={'num_parallel_tree': 8, 'subsample': 0.7,
                                                                    'colsample_bynode': 0.7, 'eta': 1.0})
simple('random_forest_softprob', 'multi:softprob', classes, rounds=2, extra={'num_class': 3, 'num_parallel_tree': 3,
                                                                             'subsample': 0.7, 'eta': 1.0})
simple('multi_target', 'reg:squarederror', lambda r, s: np.stack([s, -s, 0.5 * s * s], axis=1), rounds=6,
       extra={'tree_method': 'hist'})
simple('multi_label_logistic', 'binary:logistic', lambda r, s: np.stack([(s > 0), (s > 0.5)], axis=1).astype(np.float32),
       extra={'tree_method': 'hist'})
simple('feature_names', 'binary:logistic', binary,
       dm={'feature_names': ['age', 'visits', 'price', 'score', 'ratio', 'clicks'],
           'feature_types': ['float', 'int', 'float', 'q', 'q', 'i']})


def categorical(name, onehot):
    def build():
        rng, X, s = data(70 + onehot, 0.1)
        # Features 1 and 4 become categorical: 5 and 12 categories.
        X[:, 1] = np.where(np.isnan(X[:, 1]), np.nan, np.abs(X[:, 1]) % 5)
        X[:, 4] = np.where(np.isnan(X[:, 4]), np.nan, rng.integers(0, 12, size=len(X)))
        bonus = np.where(np.isin(X[:, 4], [2, 3, 7, 11]), 1.0, -0.5)
        y = (s + bonus + 0.5 * rng.normal(size=len(s)) > 0).astype(np.float32)
        X[-5:, 4] = [12, 13, 40, 0, 1]  # categories never seen in training
        p = {'objective': 'binary:logistic', 'max_depth': 3, 'eta': 0.3, 'seed': 0, 'nthread': 1,
             'tree_method': 'hist', 'max_cat_to_onehot': 16 if onehot else 1}
        types = ['q', 'c', 'q', 'q', 'c', 'q']
        return X, y, p, 10, {'feature_types': types, 'enable_categorical': True}
    MODELS[name] = build


categorical('categorical_onehot', True)
categorical('categorical_partition', False)


if __name__ == '__main__':
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    names = sys.argv[2:] or list(MODELS)
    for n in names:
        try:
            run(n, out)
            print('ok  ', n)
        except xgb.core.XGBoostError as e:
            print('FAIL', n, str(e).splitlines()[0])
