#!/usr/bin/python3
"""Copy the large fixtures of the shared fixture set into testdata/, reduced.

Usage: python3 reduce.py SRC [DST [NAME ...]]
       SRC: the fixture set's root; DST: this directory; NAME: a key of FIXTURES (default: all)

Needs the zstd command. For each fixture below it writes:
- the model with the fields that do not affect prediction removed (LightGBM: the per-node
  training statistics, with tree_sizes recomputed; XGBoost JSON: base_weights,
  loss_changes, sum_hessian, parents, written compactly), zstd-compressed;
- model.ubj unchanged, zstd-compressed (the XGBoost fixtures that have one);
- a subset of the input rows (zstd-compressed) and the matching lines of every expected
  file (plain text).
README.md describes the result; every file written is listed in its table.
"""
import json
import os
import re
import subprocess
import sys

# LightGBM text-model lines that hold training statistics only.
LGB_STATS = ("split_gain=", "internal_value=", "internal_weight=", "internal_count=",
             "leaf_weight=", "leaf_count=")
XGB_STATS = ("base_weights", "loss_changes", "sum_hessian", "parents")

# name -> (kind, rows kept as 1-based inclusive ranges of data rows)
FIXTURES = {
    "lightgbm-oracle/ranker_63": ("lightgbm", [(1, 1000)]),
    "lightgbm-oracle/ranker_255": ("lightgbm", [(1, 1000)]),
    "lightgbm-oracle/deep_unbalanced": ("lightgbm", [(1, 1000)]),
    # rows 4801-5000 are the boundary rows (values on split thresholds)
    "xgboost/gen_deep_d12": ("xgboost", [(1, 300), (4801, 5000)]),
    "xgboost/gen_categorical": ("xgboost", [(1, 300), (4801, 5000)]),
}


def zstd(data, path):
    with open(path, "wb") as f:
        f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, stdout=subprocess.PIPE,
                               check=True).stdout)


def strip_lightgbm(text):
    lines = [l for l in text.split("\n") if not l.startswith(LGB_STATS)]
    text = "\n".join(lines)
    starts = [m.start() for m in re.finditer(r"^Tree=\d+\n", text, re.M)]
    starts.append(text.index("end of trees"))
    sizes = " ".join(str(starts[i + 1] - starts[i]) for i in range(len(starts) - 1))
    return re.sub(r"^tree_sizes=.*$", "tree_sizes=" + sizes, text, count=1, flags=re.M)


def strip_xgboost(text):
    m = json.loads(text)
    for t in m["learner"]["gradient_booster"]["model"]["trees"]:
        for k in XGB_STATS:
            t.pop(k)
    return json.dumps(m, separators=(",", ":"))


def keep(lines, ranges, header):
    out = lines[:1] if header else []
    body = lines[1:] if header else lines
    for lo, hi in ranges:
        out += body[lo - 1:hi]
    return "".join(out)


def main():
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    names = sys.argv[3:] or list(FIXTURES)
    for name in names:
        kind, ranges = FIXTURES[name]
        s, d = os.path.join(src, name), os.path.join(dst, name)
        os.makedirs(d, exist_ok=True)
        if kind == "lightgbm":
            model = strip_lightgbm(open(os.path.join(s, "model.txt")).read())
            zstd(model.encode(), os.path.join(d, "model.txt.zst"))
            files = [("inputs.csv", True, True), ("expected_raw.txt", False, False),
                     ("expected.txt", False, False)]
        else:
            model = strip_xgboost(open(os.path.join(s, "model.json")).read())
            zstd(model.encode(), os.path.join(d, "model.json.zst"))
            zstd(open(os.path.join(s, "model.ubj"), "rb").read(), os.path.join(d, "model.ubj.zst"))
            files = [("input.csv", False, True), ("expected_raw.csv", False, False),
                     ("expected_transformed.csv", False, False)]
        for f, header, compress in files:
            text = keep(open(os.path.join(s, f)).readlines(), ranges, header)
            if compress:
                zstd(text.encode(), os.path.join(d, f + ".zst"))
            else:
                with open(os.path.join(d, f), "w") as out:
                    out.write(text)


if __name__ == "__main__":
    main()
