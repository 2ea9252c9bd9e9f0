#!/usr/bin/python3
"""Generates the ONNX test and benchmark models of engine/onnx reproducibly (fixed seeds).

Needs Debian's python3-onnx and python3-numpy (`apt-get install python3-onnx python3-numpy`);
run it with /usr/bin/python3 if another python3 comes first on PATH.

    gen_onnx_models.py                  small models + inputs into engine/onnx/testdata/
    gen_onnx_models.py --big DIR        the ~7.3M-parameter benchmark MLP into DIR/mlp_7m.onnx
    gen_onnx_models.py --dlrm DIR       the example DLRM-style ranker and its feature data into DIR

Small models (checked in, with the inputs they are tested on):
  mlp.onnx  x float32 [N,8] -> Gemm 8x16 -> Relu -> Gemm 16x1 -> "logit" [N,1], Sigmoid -> "score" [N,1]
  emb.onnx  dense float32 [N,4], ids int64 [N,2] -> Gather(table 20x3, ids) -> Flatten [N,6]
            -> Concat(dense, .) [N,10] -> Gemm 10x2 -> Softmax -> "probs" [N,2]
Each <name>.inputs.json holds the sidecar's full feature order (a superset of what the model
reads, in a different order, so the tests exercise the feature mapping) and row-major rows.
The expected outputs (<name>.expected.json) come from ONNX Runtime itself:
    go test ./engine/onnx -run TestGolden -update
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # the newest opset Debian 12's onnx 1.12 writes; ONNX Runtime 1.29 runs it
IR_VERSION = 8


def save(model, path):
    model.ir_version = IR_VERSION
    model.producer_name = "predictd/scripts/gen_onnx_models.py"
    onnx.checker.check_model(model)
    onnx.save(model, path)


def gemm_layers(rng, widths, x_name, prefix):
    """Dense layers widths[0]->...->widths[-1] with ReLU between them; returns (nodes, inits, out)."""
    nodes, inits = [], []
    cur = x_name
    for i in range(len(widths) - 1):
        fan_in, fan_out = widths[i], widths[i + 1]
        # He initialisation keeps activations O(1) through the ReLUs, so the outputs are not
        # all saturated and a wrong mapping of features changes them visibly.
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        wn, bn, out = f"{prefix}w{i}", f"{prefix}b{i}", f"{prefix}h{i}"
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        nodes.append(helper.make_node("Gemm", [cur, wn, bn], [out]))
        cur = out
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [cur], [out + "_relu"]))
            cur = out + "_relu"
    return nodes, inits, cur


def mlp(widths, seed):
    rng = np.random.default_rng(seed)
    nodes, inits, logit = gemm_layers(rng, widths, "x", "")
    nodes.append(helper.make_node("Identity", [logit], ["logit"]))
    nodes.append(helper.make_node("Sigmoid", [logit], ["score"]))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", widths[-1]]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", widths[-1]])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def emb(seed, vocab=20, dim=3, dense=4, ids=2):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),  # [N, ids, dim]
        helper.make_node("Flatten", ["emb"], ["emb_flat"], axis=1),     # [N, ids*dim]
        helper.make_node("Concat", ["dense", "emb_flat"], ["concat"], axis=1),
    ]
    lnodes, inits, logits = gemm_layers(rng, [dense + ids * dim, 2], "concat", "")
    nodes += lnodes
    nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "emb",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", dense]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", ids])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(table, "table")] + inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def write_inputs(path, features, rows):
    with open(path, "w") as f:
        json.dump({"features": features, "rows": [[float(v) for v in r] for r in rows]}, f)
        f.write("\n")


def small(outdir):
    os.makedirs(outdir, exist_ok=True)
    save(mlp([8, 16, 1], seed=1), os.path.join(outdir, "mlp.onnx"))
    rng = np.random.default_rng(2)
    # The sidecar's order: two extra features the model ignores, the model's 8 reversed.
    features = ["unused_a"] + [f"m{i}" for i in reversed(range(8))] + ["unused_b"]
    rows = rng.standard_normal((37, len(features))) * 2
    write_inputs(os.path.join(outdir, "mlp.inputs.json"), features, rows)

    save(emb(seed=3), os.path.join(outdir, "emb.onnx"))
    rng = np.random.default_rng(4)
    features = ["item_id", "d0", "d1", "user_id", "d2", "d3"]
    rows = rng.standard_normal((29, len(features)))
    rows[:, 0] = rng.integers(0, 20, 29)
    rows[:, 3] = rng.integers(0, 20, 29)
    write_inputs(os.path.join(outdir, "emb.inputs.json"), features, rows)


DLRM_DENSE = ["list_price", "hour", "distance", "position"]
DLRM_DIM = 16


def dlrm(seed, dim=DLRM_DIM, hidden=32):
    """A small DLRM-style ranker (Naumov et al. 2019): request features and a user and an
    item embedding from the feature store; the dot product of the two embeddings (their
    interaction) beside the raw inputs, then an MLP and a sigmoid.

    dense float32 [N,4], user float32 [N,dim], item float32 [N,dim]
      -> dot = ReduceSum(user*item, axis 1) [N,1]
      -> Concat(dense, user, item, dot) [N, 4+2dim+1] -> Gemm -> Relu -> Gemm -> Sigmoid -> "score" [N,1]
    """
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Mul", ["user", "item"], ["ui"]),
        helper.make_node("ReduceSum", ["ui", "axes"], ["dot"], keepdims=1),
        helper.make_node("Concat", ["dense", "user", "item", "dot"], ["x"], axis=1),
    ]
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    n, i, out = gemm_layers(rng, [len(DLRM_DENSE) + 2 * dim + 1, hidden, 1], "x", "mlp_")
    nodes += n + [helper.make_node("Sigmoid", [out], ["score"])]
    inits += i
    graph = helper.make_graph(
        nodes, "dlrm",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", len(DLRM_DENSE)]),
         helper.make_tensor_value_info("user", TensorProto.FLOAT, ["N", dim]),
         helper.make_tensor_value_info("item", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def dlrm_data(outdir, seed, users=200, items=1000, dim=DLRM_DIM):
    """users.csv and items.csv for the example: embeddings like a trained model's (normal,
    scale 0.3, rounded to 4 decimals so the files stay small) and an item's price."""
    rng = np.random.default_rng(seed)
    with open(os.path.join(outdir, "users.csv"), "w") as f:
        f.write("user_id,user_emb\n")
        for u in range(users):
            f.write(f"u{u}," + " ".join(f"{x:.4f}" for x in rng.standard_normal(dim) * 0.3) + "\n")
    with open(os.path.join(outdir, "items.csv"), "w") as f:
        f.write("item_id,item_emb,list_price\n")
        for i in range(items):
            emb = " ".join(f"{x:.4f}" for x in rng.standard_normal(dim) * 0.3)
            f.write(f"i{i},{emb},{rng.uniform(2, 40):.2f}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", metavar="DIR", help="write the benchmark MLP DIR/mlp_7m.onnx instead")
    ap.add_argument("--dlrm", metavar="DIR", help="write the example ranker DIR/models/ranker/1/model.onnx and DIR/{users,items}.csv instead")
    args = ap.parse_args()
    if args.dlrm:
        mdir = os.path.join(args.dlrm, "models", "ranker", "1")
        os.makedirs(mdir, exist_ok=True)
        save(dlrm(seed=11), os.path.join(mdir, "model.onnx"))
        dlrm_data(args.dlrm, seed=12)
        return
    if args.big:
        os.makedirs(args.big, exist_ok=True)
        path = os.path.join(args.big, "mlp_7m.onnx")
        save(mlp([512, 2048, 2048, 1024, 1], seed=7), path)
        print(path)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    small(os.path.join(here, "..", "engine", "onnx", "testdata"))


if __name__ == "__main__":
    sys.exit(main())
