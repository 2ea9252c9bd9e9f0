#!/usr/bin/python3
"""Write the hand-edited models of this directory from the 1.7.4 zoo models one level up:
XGBoost 2.x/3.x JSON model forms that XGBoost 1.7.4 cannot write. Each edit is the
smallest change that gives the newer form; see ../../README.md for why each is here.

Usage: /usr/bin/python3 make.py      (writes ./<name>/model.json, copies inputs/outputs)

Where the edit changes base_score to one value per output, the expected outputs are XGBoost
1.7.4's own for the original model with those values given as its base_margin (the margin
a per-output base_score stands for: ProbToMargin is the identity for these objectives).
"""
import json, os, shutil
import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO = os.path.dirname(HERE)


def read_input(path):
    rows = [[float(v) if v else np.nan for v in l.rstrip('\n').split(',')] for l in open(path)]
    return np.array(rows, dtype=np.float32)


def write_out(path, M):
    M = np.asarray(M, dtype=np.float32)
    M = M[:, None] if M.ndim == 1 else M
    with open(path, 'w') as f:
        for row in M:
            f.write(','.join('%.9g' % v for v in row) + '\n')


def with_margins(name, src, margins):
    """Expected outputs of src's model with a per-output base margin."""
    bst = xgb.Booster(model_file=os.path.join(ZOO, src, 'model.json'))
    X = read_input(os.path.join(ZOO, src, 'input.csv'))
    d = xgb.DMatrix(X, missing=np.nan, base_margin=np.tile(np.float32(margins), (len(X), 1)))
    write_out(os.path.join(HERE, name, 'expected_raw.csv'), bst.predict(d, output_margin=True))
    write_out(os.path.join(HERE, name, 'expected_transformed.csv'), bst.predict(d))


def edit(name, src, fn, copy_expected=True):
    m = json.load(open(os.path.join(ZOO, src, 'model.json')))
    fn(m)
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'model.json'), 'w') as f:
        json.dump(m, f, separators=(',', ':'))
    files = ['input.csv'] + (['expected_raw.csv', 'expected_transformed.csv'] if copy_expected else [])
    for fn_ in files:
        shutil.copy(os.path.join(ZOO, src, fn_), os.path.join(d, fn_))


def lmp(m):
    return m['learner']['learner_model_param']


def v31_scalar_list(m):
    # 3.1+ writes base_score as a list even for one output: "[3E-1]".
    m['version'] = [3, 1, 0]
    lmp(m)['base_score'] = '[' + lmp(m)['base_score'] + ']'


PER_CLASS = ['2E-1', '5E-1', '-3E-1']
PER_TARGET = ['1E0', '-2E0', '5E-1']


def v31_per_class(m):
    # 3.1+ multi-class: one base_score per class.
    m['version'] = [3, 1, 0]
    lmp(m)['base_score'] = '[' + ','.join(PER_CLASS) + ']'


def v31_per_target(m):
    # 3.1+ multi-target: one base_score per target, and multi_strategy in the booster's
    # parameters (one_output_per_tree: a tree per target, as 1.7 trains it).
    m['version'] = [3, 1, 0]
    lmp(m)['base_score'] = '[' + ','.join(PER_TARGET) + ']'
    m['learner']['learner_train_param'] = {'multi_strategy': 'one_output_per_tree'}


def v20_vector_leaf(m):
    # multi_strategy=multi_output_tree (2.0+): trees whose leaves hold one value per target.
    m['version'] = [2, 0, 0]
    for t in m['learner']['gradient_booster']['model']['trees']:
        t['tree_param']['size_leaf_vector'] = lmp(m)['num_target']


def v20_quantile(m):
    # reg:quantileerror (2.0) with three quantiles: a tree per quantile, the identity
    # transform and base margin, so the outputs are those of the squared-error model.
    m['version'] = [2, 0, 0]
    m['learner']['objective'] = {'name': 'reg:quantileerror', 'quantile_loss_param': {'quantile_alpha': '[0.1,0.5,0.9]'}}


def v32_expectile(m):
    # reg:expectileerror (3.2): a transform and base margin predictd does not implement.
    m['version'] = [3, 2, 0]
    m['learner']['objective'] = {'name': 'reg:expectileerror', 'expectile_loss_param': {'expectile_alpha': '[5E-1]'}}


# XGBoost 1.7.4's binary format (what save_model writes for a name not ending in .json
# or .ubj): refused with a message saying so.
os.makedirs(os.path.join(HERE, 'v17_binary'), exist_ok=True)
xgb.Booster(model_file=os.path.join(ZOO, 'reg_squarederror', 'model.json')).save_model(
    os.path.join(HERE, 'v17_binary', 'model.bin'))
edit('v31_base_score_list', 'binary_logistic_base03', v31_scalar_list)
edit('v31_base_score_per_class', 'multi_softprob', v31_per_class, copy_expected=False)
with_margins('v31_base_score_per_class', 'multi_softprob', [float(v) for v in PER_CLASS])
edit('v31_base_score_per_target', 'multi_target', v31_per_target, copy_expected=False)
with_margins('v31_base_score_per_target', 'multi_target', [float(v) for v in PER_TARGET])
edit('v20_quantile', 'multi_target', v20_quantile)
edit('v20_vector_leaf', 'multi_target', v20_vector_leaf, copy_expected=False)
edit('v32_expectile', 'reg_squarederror', v32_expectile, copy_expected=False)
