/* c_consumer.c — a C99 program that uses the core only through predictd.h: it builds a
 * two-tree LightGBM-style ensemble, scores three rows, checks the margins and reads the
 * ensemble's info. Proves the header is plain C and the library links from C. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "predictd.h"

int main(void) {
  /* Tree 0: x0 <= 1.5 ? leaf0 (0.25) : leaf1 (-0.5). Tree 1: x1 <= 0 (NaN goes left) ? 1 : 2. */
  const double base[1] = {0.0};
  const int32_t node_start[3] = {0, 1, 2}, leaf_start[3] = {0, 2, 4}, tree_output[2] = {0, 0};
  const int32_t feature[2] = {0, 1}, left[2] = {-1, -1}, right[2] = {-2, -2};
  const double threshold[2] = {1.5, 0.0};
  const uint8_t flags[2] = {0, PD_FLAG_DEFAULT_LEFT | (PD_MISSING_NAN << 2)};
  const double leaf_value[4] = {0.25, -0.5, 1.0, 2.0};
  pd_ensemble_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.semantics = PD_SEMANTICS_LIGHTGBM;
  spec.num_features = 2;
  spec.num_outputs = 1;
  spec.base_score = base;
  spec.num_trees = 2;
  spec.node_start = node_start;
  spec.leaf_start = leaf_start;
  spec.tree_output = tree_output;
  spec.feature = feature;
  spec.threshold = threshold;
  spec.flags = flags;
  spec.left = left;
  spec.right = right;
  spec.leaf_value = leaf_value;

  char err[256];
  pd_ensemble* e = NULL;
  if (pd_ensemble_new(&spec, &e, err, sizeof err) != PD_OK) {
    fprintf(stderr, "pd_ensemble_new: %s\n", err);
    return 1;
  }
  const double rows[6] = {1.5, 0.0, 2.0, 3.0, 0.0, NAN};
  const double want[3] = {1.25, 1.5, 1.25};
  double out[3];
  if (pd_predict_f64(e, PD_KERNEL_DEFAULT, rows, 3, 2, out, 3, err, sizeof err) != PD_OK) {
    fprintf(stderr, "pd_predict_f64: %s\n", err);
    return 1;
  }
  for (int i = 0; i < 3; i++) {
    if (out[i] != want[i]) {
      fprintf(stderr, "row %d: got %.17g want %.17g\n", i, out[i], want[i]);
      return 1;
    }
  }
  if (pd_predict_f64(e, PD_KERNEL_DEFAULT, rows, 3, 2, out, 2, err, sizeof err) != PD_ERR_INVALID_ARGUMENT) {
    fprintf(stderr, "short output buffer was accepted\n");
    return 1;
  }
  printf("short output refused: %s\n", err);
  pd_ensemble_info info;
  if (pd_ensemble_get_info(e, &info, err, sizeof err) != PD_OK) {
    fprintf(stderr, "pd_ensemble_get_info: %s\n", err);
    return 1;
  }
  if (info.num_trees != 2 || info.traversal == PD_TRAVERSAL_GENERIC || info.fallback_reason[0] != 0) {
    fprintf(stderr, "info: %d trees, traversal %d (%s)\n", (int)info.num_trees, (int)info.traversal, info.fallback_reason);
    return 1;
  }
  printf("c_consumer ok (kernel %s, traversal %d)\n", pd_kernel_name(), (int)info.traversal);
  pd_ensemble_free(e);
  return 0;
}
