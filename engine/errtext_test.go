package engine

import (
	"strings"
	"testing"
)

// TestParseErrorsQuoteNoContent: a file that is not a model (a link to a password file
// or a secret) fails to parse with an error that names positions and structure but
// never quotes the file's lines: GET /v1/models and the log show these errors.
func TestParseErrorsQuoteNoContent(t *testing.T) {
	const passwd = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
	const token = "AKIAabcdefSECRET0123456789xyzXYZ\n"
	leaks := []string{"root:x", "daemon", "/bin/bash", "AKIAabcdef", "SECRET"}
	for _, c := range []struct {
		name  string
		data  string
		parse func([]byte) (*Ensemble, error)
	}{
		{"lightgbm passwd", passwd, ParseLightGBM},
		{"lightgbm token", token, ParseLightGBM},
		{"lightgbm header line", "tree\nversion=v4\n" + passwd, ParseLightGBM},
		{"lightgbm objective", "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\nobjective=" + strings.TrimSpace(passwd) + "\nTree=0\n", ParseLightGBM},
		{"xgboost passwd", passwd, ParseXGBoostJSON},
		{"xgboost token", token, ParseXGBoostJSON},
		{"xgboost objective", `{"learner":{"objective":{"name":"root:x:0:0:root:/root:/bin/bash"},"learner_model_param":{"num_feature":"1","num_class":"0","base_score":"0.5"},"gradient_booster":{"name":"gbtree","model":{"trees":[],"gbtree_model_param":{"num_trees":"0"}}}}}`, ParseXGBoostJSON},
		{"xgboost ubjson", passwd, ParseXGBoostUBJSON},
	} {
		_, err := c.parse([]byte(c.data))
		if err == nil {
			t.Errorf("%s: parsed", c.name)
			continue
		}
		for _, leak := range leaks {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: the error quotes the file (%q): %v", c.name, leak, err)
			}
		}
	}
}
