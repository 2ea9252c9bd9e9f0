package sidecar

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/examples"
)

func TestParseManifest(t *testing.T) {
	ok := func(in string, check func(*Manifest) bool) {
		t.Helper()
		m, err := ParseManifest([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			return
		}
		if !check(m) {
			t.Errorf("%q: got %+v", in, m)
		}
	}
	bad := func(in, wantErr string) {
		t.Helper()
		_, err := ParseManifest([]byte(in))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one containing %q", in, err, wantErr)
		}
	}
	ok("format: xgboost\nfile: model.json\n", func(m *Manifest) bool { return m.Format == "xgboost" && m.Output == "" })
	ok("format: lightgbm\nfile: m.txt\noutput: raw\nfeatures: [a, b, 3]\n", func(m *Manifest) bool {
		return m.Output == "raw" && len(m.Features) == 3 && m.Features[2].Name == "3" && !m.Features[0].Stored()
	})
	ok("format: onnx\nfile: m.onnx\nfeatures:\n  - age\n  - {name: clicks_7d, group: user_stats, key: user_id, default: 0}\n  - {name: ctr, group: item_stats, key: item_id}\n",
		func(m *Manifest) bool {
			f := m.Features
			return len(f) == 3 && f[1].Stored() && f[1].Group == "user_stats" && f[1].Key == "user_id" &&
				f[1].Default != nil && *f[1].Default == 0 && f[2].Default == nil
		})
	bad("", "empty")
	bad("format: xgboost\nfile: m.json\ncolour: blue\n", "colour")
	bad("format: sklearn\nfile: m.pkl\n", "sklearn")
	bad("format: xgboost\n", "file: missing")
	bad("format: xgboost\nfile: ../m.json\n", "version directory")
	bad("format: xgboost\nfile: m.json\noutput: probability\n", "probability")
	bad("format: xgboost\nfile: m.json\nfeatures: [a, a]\n", "twice")
	bad("format: xgboost\nfile: m.json\nfeatures: [{name: a, group: g}]\n", "needs both group and key")
	bad("format: xgboost\nfile: m.json\nfeatures: [{name: a, group: g, key: k, colour: 1}]\n", "colour")
	bad("format: xgboost\nfile: m.json\nfeatures: [[a]]\n", "want a name")
	bad("format: xgboost\nfile: m.json\n---\nformat: lightgbm\n", "more than one")
	ok("format: xgboost\nfile: m.json\nfeatures: [a, {name: region, categories: [R11, \"7\", x]}]\n", func(m *Manifest) bool {
		return len(m.Features) == 2 && !m.Features[1].Stored() && strings.Join(m.Features[1].Categories, ",") == "R11,7,x"
	})
	bad("format: xgboost\nfile: m.json\nfeatures: [{name: a, group: g, key: k, categories: [x]}]\n", "categories are for a request feature")
	bad("format: xgboost\nfile: m.json\nfeatures: [{name: a, categories: []}]\n", "categories is empty")
	bad("format: xgboost\nfile: m.json\nfeatures: [{name: a, categories: [x, y, x]}]\n", `categories 0 and 2 are the same label "x"`)
	bad("format: xgboost\nfile: m.json\nfeatures: [~, b]\n", "line 3: features[0] is empty")
	bad("format: xgboost\nfile: m.json\nfeatures: [a, null]\n", "features[1] is empty")
	bad("format: xgboost\nfile: m.json\nweight: 0\n", "weight 0: want a positive number")
	bad("format: xgboost\nfile: m.json\nweight: 0.0\n", "weight 0: want a positive number")
	bad("format: xgboost\nfile: m.json\nweight: 0x0\n", "weight 0: want a positive number")
	ok("format: xgboost\nfile: m.json\nweight: 0.5\n", func(m *Manifest) bool { return m.Weight == 0.5 })
	// Values from the file are quoted only when short and plain (a model.yaml that is a
	// link to another file must not publish its lines); by length otherwise.
	const secret = "s3cr3t password=hunter2 /home/user/.ssh/id_rsa"
	for _, in := range []string{"format: " + secret + "\nfile: m\n", "format: xgboost\nfile: " + secret + "\n",
		"format: xgboost\nfile: m\noutput: " + secret + "\n", "format: xgboost\nfile: m\nfeatures: [\"" + secret + "\", \"" + secret + "\"]\n",
		"format: xgboost\nfile: m\nfeatures: [{name: \"" + secret + "\"}]\n", "\"" + secret + "\": 1\n",
		"format: xgboost\nfile: m\nfeatures: [{name: a, categories: [\"" + secret + "\", \"" + secret + "\"]}]\n",
		"format: xgboost\nfile: m\nshadows: [{model: b, \"" + secret + "\": 1}]\n", "format: xgboost\nfile: m\nlog: {\"" + secret + "\": 1}\n"} {
		_, err := ParseManifest([]byte(in))
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "not shown") {
			t.Errorf("%q: error %v, want one that shows the value by its length only", in, err)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	f := func(a, b string, want int) {
		t.Helper()
		if got := compareVersions(a, b); got != want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", a, b, got, want)
		}
	}
	f("9", "10", -1)
	f("10", "9", 1)
	f("2", "2", 0)
	f("10", "beta", -1)
	f("beta", "alpha", 1)
	f("01", "1", -1)
	f("1.5", "10", -1)
	f("10", "1.5", 1)
	f("1.10", "1.9", 1)
	f("2.0.1", "2.0", 1)
	f("2.0", "2.0.1", -1)
	f("2", "1.99", 1)
	f("1.5", "beta", -1)
	f("-3", "5", 1) // not a number: after the numbers, by bytes
	f("1.", "1", 1)
	f("1..2", "1", 1)
	f("99999999999999999999999", "100000000000000000000000", -1)
	f("1.05", "1.5", -1) // equal parts written differently: by bytes
	f("1.5", "1.5", 0)
}

// repoFS builds an in-memory repository from a model file and manifests.
func repoFS(t *testing.T, files map[string]string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func TestRegistryLoad(t *testing.T) {
	agaricus := string(mustRead(t, "testdata/agaricus/model.json"))
	features127 := "features: [" + strings.TrimSuffix(strings.Repeat("x,", 126), ",") + ", y]\n"
	var uniq []string
	for i := 0; i < 126; i++ {
		uniq = append(uniq, fmt.Sprintf("u%d", i))
	}
	unique127 := "features: [" + strings.Join(uniq, ", ") + ", y]\n"
	reg := newTestRegistry(t, repoFS(t, map[string]string{
		"rank/9/model.yaml":       xgbManifest,
		"rank/9/model.json":       agaricus,
		"rank/10/model.yaml":      xgbManifest + "output: raw\n",
		"rank/10/model.json":      agaricus,
		"rank/old/model.yaml":     xgbManifest,
		"rank/old/model.json":     agaricus,
		"rank/.tmp/model.yaml":    "broken",
		"onnx/1/model.yaml":       "format: onnx\nfile: m.onnx\n",
		"onnx/1/m.onnx":           "",
		"store/1/model.yaml":      xgbManifest + strings.Replace(unique127, "y]", "{name: y, group: g, key: user_id}]", 1),
		"store/1/model.json":      agaricus,
		"count/1/model.yaml":      xgbManifest + "features: [a, b]\n",
		"count/1/model.json":      agaricus,
		"dup/1/model.yaml":        xgbManifest + features127,
		"dup/1/model.json":        agaricus,
		"nofile/1/model.yaml":     xgbManifest,
		"nomanifest/1/README":     "",
		"inferred/1/model.json":   agaricus, // no model.yaml: format and file inferred
		"ambiguous/1/a.json":      agaricus,
		"ambiguous/1/b.ubj":       "",
		"onnxlabels/1/model.onnx": "",
		"onnxlabels/1/labels.txt": "",
		"empty/README":            "",
		"garbage/1/model.yaml":    xgbManifest,
		"garbage/1/model.json":    `{"learner":`,
	}), nil)
	defer reg.Close()
	if reg.Ready() {
		t.Fatal("ready before the first load")
	}
	res := reg.Reload()
	if !reg.Ready() || res.Serving != 4 {
		t.Fatalf("serving %d: %+v", res.Serving, res)
	}
	// Numeric versions order numerically and before names: 10 serves.
	v, err := reg.acquire([]byte("rank"), nil)
	if err != nil || v.version != "old" {
		t.Fatalf("latest: %v %v", v, err)
	}
	v.release()
	st, _ := reg.Model("rank")
	var order []string
	for _, v := range st.Versions {
		order = append(order, v.Version+":"+v.State)
	}
	if got := strings.Join(order, " "); got != "9:loaded 10:loaded old:serving" {
		t.Errorf("versions: %s", got)
	}
	failed := func(model, want string) {
		t.Helper()
		st, ok := reg.Model(model)
		if !ok {
			t.Fatalf("model %s missing", model)
		}
		for _, v := range st.Versions {
			if v.State == "failed" && strings.Contains(v.Error, want) {
				return
			}
		}
		t.Errorf("model %s: no failure mentioning %q: %+v", model, want, st.Versions)
	}
	failed("onnx", "not supported in this build")
	failed("store", "feature store not configured")
	failed("count", "lists 2 features but the model takes 127")
	failed("dup", `"x" appears twice`)
	failed("nofile", "model.json")
	failed("nomanifest", "model.yaml missing (want format, file, and optionally features and output); no model file")
	failed("onnxlabels", "an ONNX model needs one that names its features")
	failed("ambiguous", `2 files could be the model ("a.json", "b.ubj", ...)`)
	if v, err := reg.acquire([]byte("inferred"), nil); err != nil {
		t.Errorf("a version with only model.json: %v", err)
	} else {
		v.release()
	}
	failed("empty", "no version directories")
	failed("garbage", "model.json")
	if _, err := reg.acquire([]byte("onnx"), nil); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("model without a loaded version: %v", err)
	}
	if _, err := reg.acquire([]byte("nope"), nil); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	// A reload with nothing changed keeps the same loaded versions.
	before, _ := reg.acquire([]byte("rank"), []byte("9"))
	before.release()
	res = reg.Reload()
	after, _ := reg.acquire([]byte("rank"), []byte("9"))
	after.release()
	if before != after || len(res.Loaded) != 0 || len(res.Failed) != 0 {
		t.Errorf("unchanged reload reloaded: %+v", res)
	}
}

// newTestRegistry is the registry New builds, without a server, over fsys with store.
func newTestRegistry(t *testing.T, fsys fs.FS, store FeatureStore) *Registry {
	t.Helper()
	r, err := newRegistry(fsys, "test", &Config{Threads: 1, FeatureStore: store}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fakeStore is a FeatureStore that binds any group, for the load-time contract.
type fakeStore struct{ bound []StoreColumn }

func (s *fakeStore) ReloadGroups() (map[string]string, error) { return nil, nil }

func (s *fakeStore) Width(group, name string) (int, error) { return 1, nil }

func (s *fakeStore) Bind(model, version string, cols []StoreColumn) (FeatureBinding, error) {
	for _, c := range cols {
		if c.Spec.Group != "user_stats" {
			return nil, errors.New("unknown group " + c.Spec.Group)
		}
	}
	s.bound = cols
	return nil, nil
}

func TestStoreFeaturesBind(t *testing.T) {
	agaricus := string(mustRead(t, "testdata/agaricus/model.json"))
	var feats []string
	for i := 0; i < 127; i++ {
		feats = append(feats, "f"+string(rune('a'+i%26))+strings.Repeat("z", i/26))
	}
	feats[5] = "{name: clicks, group: user_stats, key: user_id, default: 0}"
	st := &fakeStore{}
	reg := newTestRegistry(t, repoFS(t, map[string]string{
		"m/1/model.yaml": xgbManifest + "features: [" + strings.Join(feats, ", ") + "]\n",
		"m/1/model.json": agaricus,
		"m/2/model.yaml": xgbManifest + "features: [" + strings.Replace(strings.Join(feats, ", "), "user_stats", "nope", 1) + "]\n",
		"m/2/model.json": agaricus,
	}), st)
	defer reg.Close()
	res := reg.Reload()
	if len(res.Loaded) != 1 || len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "unknown group nope") {
		t.Fatalf("%+v", res)
	}
	if len(st.bound) != 1 || st.bound[0].Column != 5 || st.bound[0].Spec.Name != "clicks" {
		t.Fatalf("bound %+v", st.bound)
	}
	v, err := reg.acquire([]byte("m"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.release()
	if v.cols["clicks"] != 5 || v.cols["fa"] != 0 {
		t.Errorf("columns: %v", v.cols)
	}
	if !v.f32 || !v.info.Float32Input || v.pred.(*engine.Model).Semantics() != engine.SemanticsXGBoost {
		t.Errorf("an XGBoost model should take float32 rows")
	}
}

// TestPredictorContract: the registry takes a version's row type, warm-up values and
// background scoring from engine.Info, and background scoring only from an *engine.Model
// itself: a loader's wrapper that embeds one (test-gate) inherits Info().Background but
// must still be scored through its own Predict methods.
func TestPredictorContract(t *testing.T) {
	demo, err := fs.ReadFile(examples.Models(), "claims/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRegistry(repoFS(t, map[string]string{
		"plain/1/model.yaml": lgbManifest,
		"plain/1/model.txt":  string(demo),
		"gated/1/model.yaml": gateManifest,
		"gated/1/model.txt":  string(demo),
	}), "test", &Config{Threads: 1, Formats: gateFormat}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if res := r.Reload(); len(res.Failed) > 0 || len(res.Loaded) != 2 {
		t.Fatalf("%+v", res)
	}
	acquire := func(name string) *version {
		t.Helper()
		v, err := r.acquire([]byte(name), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.release)
		return v
	}
	plain, gated := acquire("plain"), acquire("gated")
	if plain.f32 || !plain.info.MissingNaN || plain.info.Backend == "" || plain.info.Backend == "unknown" {
		t.Errorf("a LightGBM model: float64 rows, NaN as missing, a named backend; got f32 %v, info %+v", plain.f32, plain.info)
	}
	if (plain.bg != nil) != plain.info.Background {
		t.Errorf("engine.Model with Info().Background %v: background scorer set %v", plain.info.Background, plain.bg != nil)
	}
	if !reflect.DeepEqual(gated.info, plain.info) {
		t.Errorf("the wrapper inherits its model's Info: %+v, want %+v", gated.info, plain.info)
	}
	if gated.bg != nil {
		t.Error("a wrapper that embeds *engine.Model got a background scorer: its own PredictF64 would be bypassed")
	}
	if _, err := New(Config{ModelFS: examples.Models(), Formats: map[string]FormatLoader{"xgboost": gateFormat["test-gate"]}}); err == nil ||
		!strings.Contains(err.Error(), "built in") {
		t.Errorf("Config.Formats replacing a built-in format: %v, want an error", err)
	}
}
