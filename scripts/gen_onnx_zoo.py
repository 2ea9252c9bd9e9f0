#!/usr/bin/python3
"""Generates engine/onnx/testdata/zoo/: tiny ONNX models shaped like what common exporters
write (torch.onnx without dynamic_axes, skl2onnx, hummingbird, onnxmltools for LightGBM /
XGBoost), a few broken ones, and the outputs each should give, computed here with numpy
from the weights (not by ONNX Runtime).

Needs Debian's python3-onnx (1.12) and python3-numpy; fixed seeds, so reruns are identical.

    gen_onnx_zoo.py        writes engine/onnx/testdata/zoo/*.onnx and zoo/expected.json

expected.json: {"features": [...], "rows": [[...]], "models": {name: {"outputs": {output:
[row-major values]}}}}. Every model reads its inputs from the same rows (feature order
f0 f1 f2 i0 i1 b0 b1: three floats, two small integers, two 0/1 flags).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NROWS = 37  # not a multiple of the fixed batch sizes below, so the last chunk is partial
FEATURES = ["f0", "f1", "f2", "i0", "i1", "b0", "b1"]
ML = "ai.onnx.ml"


def rows():
    rng = np.random.default_rng(21)
    x = np.zeros((NROWS, len(FEATURES)))
    x[:, 0:3] = np.round(rng.standard_normal((NROWS, 3)) * 2, 3)
    x[:, 3:5] = rng.integers(0, 10, (NROWS, 2))
    x[:, 5:7] = rng.integers(0, 2, (NROWS, 2))
    return x


def col(x, *names):
    return x[:, [FEATURES.index(n) for n in names]]


def model(nodes, name, inputs, outputs, inits=(), opset=17, ml=None, ir=8):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    ops = [helper.make_opsetid("", opset)]
    if ml is not None:
        ops.append(helper.make_opsetid(ML, ml))
    m = helper.make_model(g, opset_imports=ops, producer_name="predictd/scripts/gen_onnx_zoo.py")
    m.ir_version = ir
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def linear(batch, opset=17, ir=8, squeeze=False):
    """torch.onnx style Linear(3, 1): x float [batch,3] -> MatMul + Add -> y [batch,1]
    (squeeze: then Squeeze -> y [batch], as for a model returning logits.squeeze(1))."""
    w = np.array([[0.5], [-1.25], [2.0]], np.float32)
    b = np.array([0.25], np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y1"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    if squeeze:
        nodes.append(helper.make_node("Squeeze", ["y1", "ax"], ["y"]))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
    else:
        nodes.append(helper.make_node("Identity", ["y1"], ["y"]))
    m = model(nodes, "linear", [vi("x", TensorProto.FLOAT, [batch, 3])],
              [vi("y", TensorProto.FLOAT, [batch] if squeeze else [batch, 1])], inits, opset=opset, ir=ir)
    return m, lambda x: {"y": (col(x, "f0", "f1", "f2").astype(np.float32) @ w + b).ravel()}


def typed_input(elem, np_in, feats, squeeze_out):
    """One input of type elem [N,k] -> Cast float -> MatMul -> y float [N,1] (or [N])."""
    k = len(feats)
    w = np.arange(1, k + 1, dtype=np.float32).reshape(k, 1) * np.float32(0.5)
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["xf", "w"], ["y1"])]
    inits = [numpy_helper.from_array(w, "w")]
    if squeeze_out:
        nodes.append(helper.make_node("Squeeze", ["y1", "ax"], ["y"]))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax"))
        out = vi("y", TensorProto.FLOAT, ["N"])
    else:
        nodes.append(helper.make_node("Identity", ["y1"], ["y"]))
        out = vi("y", TensorProto.FLOAT, ["N", 1])
    m = model(nodes, "typed", [vi("x", elem, ["N", k])], [out], inits)
    return m, lambda x: {"y": (np_in(col(x, *feats)).astype(np.float32) @ w).ravel()}


def float16_rank3_out():
    """A half-precision model's output with a trailing axis: x float [N,3] -> MatMul 3x2 ->
    Cast float16 -> Reshape -> y float16 [N,2,1] (two values per row)."""
    w = np.array([[0.5, -1.0], [0.25, 2.0], [-0.75, 0.125]], np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Cast", ["xw"], ["xh"], to=TensorProto.FLOAT16),
             helper.make_node("Reshape", ["xh", "shape"], ["y"])]
    m = model(nodes, "float16_out", [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("y", TensorProto.FLOAT16, ["N", 2, 1])],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 2, 1], np.int64), "shape")])
    return m, lambda x: {"y": (col(x, "f0", "f1", "f2").astype(np.float32) @ w).astype(np.float16).astype(np.float64).ravel()}


def double_model():
    """skl2onnx with DoubleTensorType: x double [N,3] -> MatMul + Add (double) -> y double [N,1]."""
    w = np.array([[0.1], [0.2], [-0.3]], np.float64)
    b = np.array([1e-9], np.float64)
    m = model([helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
              "double", [vi("x", TensorProto.DOUBLE, ["N", 3])], [vi("y", TensorProto.DOUBLE, ["N", 1])],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return m, lambda x: {"y": (col(x, "f0", "f1", "f2") @ w + b).ravel()}


def per_feature():
    """hummingbird / skl2onnx with one input per column: f0 float [N,1], f1 double [N,1],
    i0 int64 [N,1], b0 bool [N] -> Cast / Unsqueeze -> Concat [N,4] -> MatMul -> y [N,1]."""
    w = np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    nodes = [helper.make_node("Cast", ["f1"], ["f1c"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["i0"], ["i0c"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["b0"], ["b0c"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["b0c", "ax"], ["b0u"]),
             helper.make_node("Concat", ["f0", "f1c", "i0c", "b0u"], ["xc"], axis=1),
             helper.make_node("MatMul", ["xc", "w"], ["y"])]
    m = model(nodes, "per_feature",
              [vi("f0", TensorProto.FLOAT, ["N", 1]), vi("f1", TensorProto.DOUBLE, ["N", 1]),
               vi("i0", TensorProto.INT64, ["N", 1]), vi("b0", TensorProto.BOOL, ["N"])],
              [vi("y", TensorProto.FLOAT, ["N", 1])],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "ax")])
    return m, lambda x: {"y": (col(x, "f0", "f1", "i0", "b0").astype(np.float32) @ w).ravel()}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


LIN_COEF = np.array([[0.3, -0.2, 0.1], [-0.5, 0.4, 0.2], [0.1, 0.1, -0.6]], np.float32)  # [K=3, F=3]
LIN_ICPT = np.array([0.1, -0.2, 0.05], np.float32)


def linear_classifier(post, zipmap=False, string_labels=False, prob_shape=("N", 3)):
    """skl2onnx LogisticRegression: LinearClassifier (ai.onnx.ml 1) -> label [N] and
    probabilities float [N,3]; with zipmap the probabilities become seq(map(int64, float))."""
    attrs = dict(coefficients=LIN_COEF.ravel().tolist(), intercepts=LIN_ICPT.tolist(),
                 multi_class=0 if post == "SOFTMAX" else 1, post_transform=post)
    if string_labels:
        attrs["classlabels_strings"] = ["b", "a", "c"]
        label = vi("label", TensorProto.STRING, ["N"])
    else:
        attrs["classlabels_ints"] = [0, 1, 2]
        label = vi("label", TensorProto.INT64, ["N"])
    nodes = [helper.make_node("LinearClassifier", ["x"], ["label", "probabilities" if not zipmap else "probs"],
                              domain=ML, **attrs)]
    outs = [label]
    if zipmap:
        labels = dict(classlabels_strings=["b", "a", "c"]) if string_labels else dict(classlabels_int64s=[0, 1, 2])
        nodes.append(helper.make_node("ZipMap", ["probs"], ["output_probability"], domain=ML, **labels))
        mt = onnx.TypeProto()  # seq(map(key, float)); onnx 1.12's onnx.helper has no make_map_type_proto
        mt.map_type.key_type = TensorProto.STRING if string_labels else TensorProto.INT64
        mt.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
        outs.append(helper.make_value_info("output_probability", helper.make_sequence_type_proto(mt)))
    else:
        outs.append(vi("probabilities", TensorProto.FLOAT, list(prob_shape)))
    m = model(nodes, "linear_classifier", [vi("x", TensorProto.FLOAT, ["N", 3])], outs, opset=13, ml=1, ir=7)

    def expect(x):
        z = col(x, "f0", "f1", "f2").astype(np.float32) @ LIN_COEF.T + LIN_ICPT
        p = softmax(z) if post == "SOFTMAX" else sigmoid(z) if post == "LOGISTIC" else z
        out = {"label": np.argmax(p, axis=1).astype(np.float64)}
        if zipmap:
            # A map iterates its keys sorted (ONNX Runtime's std::map): the string labels
            # b, a, c come out as a, b, c.
            order = np.argsort(["b", "a", "c"]) if string_labels else np.arange(3)
            out["output_probability"] = p[:, order].ravel()
        else:
            out["probabilities"] = p.ravel()
        if string_labels:
            del out["label"]
        return out
    return m, expect


def if_width():
    """tf2onnx-style control flow whose branches differ in width: If(true) gives the
    softmax probabilities [N,3], the else branch [N,6], so ONNX Runtime knows only [N, ?]
    before a run."""
    m, expect = linear_classifier("SOFTMAX")
    clf = m.graph.node[0]
    then_g = helper.make_graph([helper.make_node("Identity", ["probabilities"], ["p_then"])], "then", [],
                               [vi("p_then", TensorProto.FLOAT, ["N", 3])])
    else_g = helper.make_graph([helper.make_node("Concat", ["probabilities", "probabilities"], ["p_else"], axis=1)],
                               "else", [], [vi("p_else", TensorProto.FLOAT, ["N", 6])])
    # The condition depends on the data (sum of squares >= 0, true for finite inputs), so
    # no constant folding picks a branch before the run.
    nodes = [clf, helper.make_node("ReduceSumSquare", ["x"], ["ss"], keepdims=0),
             helper.make_node("GreaterOrEqual", ["ss", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["scores"], then_branch=then_g, else_branch=else_g)]
    m2 = model(nodes, "if_width", [vi("x", TensorProto.FLOAT, ["N", 3])],
               [vi("scores", TensorProto.FLOAT, ["N", "W"])],
               [numpy_helper.from_array(np.array(0, np.float32), "zero")], opset=13, ml=1, ir=7)
    return m2, lambda x: {"scores": expect(x)["probabilities"]}


def linear_regressor():
    """skl2onnx LinearRegression: LinearRegressor (ai.onnx.ml 1) -> variable float [N,1]."""
    coef = np.array([1.5, -0.5, 0.25], np.float32)
    m = model([helper.make_node("LinearRegressor", ["x"], ["variable"], domain=ML, coefficients=coef.tolist(),
                                intercepts=[0.75], targets=1)],
              "linear_regressor", [vi("x", TensorProto.FLOAT, ["N", 3])], [vi("variable", TensorProto.FLOAT, ["N", 1])],
              opset=13, ml=1, ir=7)
    return m, lambda x: {"variable": (col(x, "f0", "f1", "f2").astype(np.float32) @ coef + np.float32(0.75)).ravel()}


# Two trees over f0..f2 in the layout onnxmltools writes: per node a feature, a threshold,
# a mode (BRANCH_LEQ / LEAF) and true/false children; leaves carry weights.
TREES = [
    # tree 0: f0 <= 0.5 ? (f1 <= -1 ? leaf 0.3 : leaf -0.2) : leaf 0.7
    dict(feat=[0, 1, 0, 0, 0], thr=[0.5, -1.0, 0, 0, 0], mode=["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF", "LEAF"],
         t=[1, 2, 0, 0, 0], f=[4, 3, 0, 0, 0], leaf={2: 0.3, 3: -0.2, 4: 0.7}),
    # tree 1: f2 <= 0 ? leaf -0.4 : (f0 <= 1.5 ? leaf 0.1 : leaf 0.9)
    dict(feat=[2, 0, 0, 0, 0], thr=[0.0, 1.5, 0, 0, 0], mode=["BRANCH_LEQ", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"],
         t=[1, 0, 3, 0, 0], f=[2, 0, 4, 0, 0], leaf={1: -0.4, 3: 0.1, 4: 0.9}),
]


def tree_nodes(trees, leaf_target):
    """ai.onnx.ml tree attributes; leaf_target(tree index) -> the target/class id of its leaves."""
    a = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true"]}
    leaves = {"treeids": [], "nodeids": [], "ids": [], "weights": []}
    for ti, tr in enumerate(trees):
        for n in range(len(tr["feat"])):
            a["nodes_treeids"].append(ti)
            a["nodes_nodeids"].append(n)
            a["nodes_featureids"].append(tr["feat"][n])
            a["nodes_values"].append(float(tr["thr"][n]))
            a["nodes_modes"].append(tr["mode"][n])
            a["nodes_truenodeids"].append(tr["t"][n])
            a["nodes_falsenodeids"].append(tr["f"][n])
            a["nodes_missing_value_tracks_true"].append(0)
        for n, w in sorted(tr["leaf"].items()):
            leaves["treeids"].append(ti)
            leaves["nodeids"].append(n)
            leaves["ids"].append(leaf_target(ti))
            leaves["weights"].append(w)
    return a, leaves


def tree_eval(tr, x):
    n = 0
    while tr["mode"][n] != "LEAF":
        n = tr["t"][n] if np.float32(x[tr["feat"][n]]) <= np.float32(tr["thr"][n]) else tr["f"][n]
    return np.float32(tr["leaf"][n])


def tree_regressor(ml):
    """onnxmltools LightGBM regressor: TreeEnsembleRegressor (SUM of 2 trees + base 0.5) -> variable [N,1]."""
    a, lv = tree_nodes(TREES, lambda ti: 0)
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["variable"], domain=ML, n_targets=1,
                            aggregate_function="SUM", post_transform="NONE", base_values=[0.5],
                            target_treeids=lv["treeids"], target_nodeids=lv["nodeids"], target_ids=lv["ids"],
                            target_weights=lv["weights"], **a)
    m = model([node], "tree_regressor", [vi("x", TensorProto.FLOAT, ["N", 3])],
              [vi("variable", TensorProto.FLOAT, ["N", 1])], opset=17 if ml == 3 else 13, ml=ml, ir=8 if ml == 3 else 7)

    def expect(x):
        f = col(x, "f0", "f1", "f2")
        return {"variable": np.array([0.5 + sum(tree_eval(t, r) for t in TREES) for r in f], np.float32)}
    return m, expect


def tree_classifier_binary():
    """onnxmltools LightGBM binary: TreeEnsembleClassifier, classes [0,1], leaves weigh class 0
    only (the binary layout), LOGISTIC -> label int64 [N], probabilities float [N,2] =
    [1-sigmoid(s), sigmoid(s)] with s the sum of the leaves."""
    a, lv = tree_nodes(TREES, lambda ti: 0)
    node = helper.make_node("TreeEnsembleClassifier", ["x"], ["label", "probabilities"], domain=ML,
                            classlabels_int64s=[0, 1], post_transform="LOGISTIC",
                            class_treeids=lv["treeids"], class_nodeids=lv["nodeids"], class_ids=lv["ids"],
                            class_weights=lv["weights"], **a)
    m = model([node], "tree_binary", [vi("x", TensorProto.FLOAT, ["N", 3])],
              [vi("label", TensorProto.INT64, ["N"]), vi("probabilities", TensorProto.FLOAT, ["N", 2])], ml=3)

    def expect(x):
        s = np.array([sum(tree_eval(t, r) for t in TREES) for r in col(x, "f0", "f1", "f2")], np.float32)
        p = sigmoid(s)
        return {"label": (p > 0.5).astype(np.float64), "probabilities": np.stack([1 - p, p], axis=1).ravel()}
    return m, expect


def tree_classifier_multi():
    """onnxmltools LightGBM multiclass: one tree per class per round (here 2 rounds x 3
    classes, tree i scores class i % 3), SOFTMAX -> label [N], probabilities [N,3]."""
    trees = [TREES[0], TREES[1], TREES[0], TREES[1], TREES[0], TREES[1]]
    a, lv = tree_nodes(trees, lambda ti: ti % 3)
    node = helper.make_node("TreeEnsembleClassifier", ["x"], ["label", "probabilities"], domain=ML,
                            classlabels_int64s=[0, 1, 2], post_transform="SOFTMAX",
                            class_treeids=lv["treeids"], class_nodeids=lv["nodeids"], class_ids=lv["ids"],
                            class_weights=lv["weights"], **a)
    m = model([node], "tree_multi", [vi("x", TensorProto.FLOAT, ["N", 3])],
              [vi("label", TensorProto.INT64, ["N"]), vi("probabilities", TensorProto.FLOAT, ["N", 3])], ml=3)

    def expect(x):
        f = col(x, "f0", "f1", "f2")
        z = np.zeros((len(f), 3), np.float32)
        for ti, t in enumerate(trees):
            z[:, ti % 3] += [tree_eval(t, r) for r in f]
        p = softmax(z)
        return {"label": np.argmax(p, axis=1).astype(np.float64), "probabilities": p.ravel()}
    return m, expect


def external_data(outdir):
    """A torch.onnx export of a big model saved with its weights in a side file that is
    missing: the initializer w says data_location EXTERNAL, location weights.bin."""
    m, _ = linear("N")
    w = m.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "weights.bin"), ("offset", "0"), ("length", "12")]:
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(m, os.path.join(outdir, "external_data.onnx"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = os.path.join(here, "..", "engine", "onnx", "testdata", "zoo")
    os.makedirs(outdir, exist_ok=True)
    x = rows()
    f16 = lambda v: v.astype(np.float16)
    zoo = {
        "batch1": linear(1),
        "batch16": linear(16),
        "opset13": linear("N", opset=13, ir=7),
        "out_rank1": linear("N", squeeze=True),
        "double": double_model(),
        "float16_out": float16_rank3_out(),
        "float16": typed_input(TensorProto.FLOAT16, f16, ["f0", "f1", "f2"], squeeze_out=True),
        "int32": typed_input(TensorProto.INT32, lambda v: v.astype(np.int32), ["i0", "i1"], squeeze_out=False),
        "int64": typed_input(TensorProto.INT64, lambda v: v.astype(np.int64), ["i0", "i1"], squeeze_out=True),
        "bool": typed_input(TensorProto.BOOL, lambda v: v.astype(bool), ["b0", "b1"], squeeze_out=False),
        "per_feature": per_feature(),
        "linear_clf_softmax": linear_classifier("SOFTMAX"),
        "linear_clf_logistic": linear_classifier("LOGISTIC"),
        "linear_clf_none": linear_classifier("NONE"),
        "zipmap": linear_classifier("SOFTMAX", zipmap=True),
        "string_label": linear_classifier("SOFTMAX", string_labels=True),
        # ZipMap over string class labels: map(string, float), keys in the order ORT sorts them.
        "zipmap_str": linear_classifier("SOFTMAX", zipmap=True, string_labels=True),
        # A width declared open ([N, K]; ONNX Runtime infers 3), and one no inference can fix.
        "open_width": linear_classifier("SOFTMAX", prob_shape=("N", "K")),
        "if_width": if_width(),
        "linear_reg": linear_regressor(),
        "tree_reg": tree_regressor(ml=3),
        "tree_reg_ml1": tree_regressor(ml=1),
        "tree_binary": tree_classifier_binary(),
        "tree_multi": tree_classifier_multi(),
    }
    expected = {}
    for name, (m, expect) in sorted(zoo.items()):
        onnx.checker.check_model(m)
        data = m.SerializeToString()
        with open(os.path.join(outdir, name + ".onnx"), "wb") as f:
            f.write(data)
        expected[name] = {"outputs": {k: [float(v) for v in np.asarray(a).ravel()] for k, a in expect(x).items()}}
    # Broken files: a truncated model and one whose weights live in a missing side file.
    with open(os.path.join(outdir, "truncated.onnx"), "wb") as f:
        f.write(zoo["tree_multi"][0].SerializeToString()[:150])
    external_data(outdir)
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump({"features": FEATURES, "rows": x.tolist(), "models": expected}, f, indent=None)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
