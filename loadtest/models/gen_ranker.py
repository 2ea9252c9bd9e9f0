#!/usr/bin/python3
"""Train a ranker-shaped XGBoost model: 500 trees over 80 named features.

Usage: /usr/bin/python3 loadtest/models/gen_ranker.py OUT_DIR

Writes OUT_DIR/ranker/1/model.json (Booster.save_model) and OUT_DIR/ranker/1/model.yaml
(the features named as a ranker assembling them from several sources would name them:
user_ctr_00_7d, item_cvr_01_7d, ...), plus OUT_DIR/ranker/input.csv (200 rows) and
OUT_DIR/ranker/expected.csv (XGBoost's transformed scores for them, %.9g), so that the
served model can be checked against XGBoost's own outputs.

Needs Debian's python3-xgboost (1.7.4) and python3-numpy; about a minute on 2 vCPUs.

Data: numpy.random.default_rng(20261205); 20,000 training rows. The features come from
8 latent Gaussian factors plus noise (correlated, as signals about one user or item are),
with normal, log-normal, ratio, count and binary marginals, rounded to 2 decimals (the
load generator sends 2-decimal values) and cast to float32; 3% NaN. The label is
Bernoulli(sigmoid(s)) with a nonlinear s. binary:logistic, tree_method hist, max_depth 6
(XGBoost's default), eta 0.05, 500 rounds, seed 0, nthread 2.
"""
import os
import sys

import numpy as np
import xgboost as xgb

N_FEATURES, N_TREES, N_TRAIN, N_CHECK = 80, 500, 20_000, 200


def names():
    src = ["user", "item", "query", "ctx"]
    sig = ["ctr", "cvr", "dwell", "views", "score"]
    return [f"{src[i % 4]}_{sig[(i // 4) % 5]}_{i:02d}_7d" for i in range(N_FEATURES)]


def data(rng, n):
    z = rng.standard_normal((n, 8))
    load = rng.standard_normal((8, N_FEATURES))
    x = z @ load / np.sqrt(8) + 0.5 * rng.standard_normal((n, N_FEATURES))
    for j in range(N_FEATURES):
        kind = j % 5
        if kind == 1:
            x[:, j] = np.exp(x[:, j])  # log-normal: counts of views, dwell seconds
        elif kind == 2:
            x[:, j] = 1 / (1 + np.exp(-x[:, j]))  # a rate in (0, 1)
        elif kind == 3:
            x[:, j] = np.floor(np.exp(1.5 + x[:, j]))  # a count
        elif kind == 4:
            x[:, j] = (x[:, j] > 0.3).astype(float)  # a flag
    s = (np.sin(x[:, 0] * 2) + x[:, 1] * x[:, 2] - 0.5 * (x[:, 3] > 4) + 0.3 * x[:, 5]
         - 0.2 * np.log1p(x[:, 8]) + 0.4 * x[:, 12] * (x[:, 4] > 0.5) - 0.5)
    y = rng.random(n) < 1 / (1 + np.exp(-s))
    x = np.round(x, 2).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan
    return x, y.astype(np.float32)


def main():
    out = os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "ranker")
    os.makedirs(os.path.join(out, "1"), exist_ok=True)
    rng = np.random.default_rng(20261205)
    x, y = data(rng, N_TRAIN + N_CHECK)
    dtrain = xgb.DMatrix(x[:N_TRAIN], label=y[:N_TRAIN])
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6,
              "eta": 0.05, "seed": 0, "nthread": 2}
    booster = xgb.train(params, dtrain, num_boost_round=N_TREES)
    booster.save_model(os.path.join(out, "1", "model.json"))
    with open(os.path.join(out, "1", "model.yaml"), "w") as f:
        f.write("format: xgboost\nfile: model.json\noutput: transformed\n")
        f.write("features: [%s]\n" % ", ".join(names()))
    check = x[N_TRAIN:]
    pred = booster.predict(xgb.DMatrix(check))
    with open(os.path.join(out, "input.csv"), "w") as f:
        for row in check:
            f.write(",".join("" if np.isnan(v) else "%.9g" % v for v in row) + "\n")
    with open(os.path.join(out, "expected.csv"), "w") as f:
        for p in pred:
            f.write("%.9g\n" % p)


if __name__ == "__main__":
    main()
