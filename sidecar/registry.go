package sidecar

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/predictd/predictd/engine"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Sentinel errors of the request path; errorStatus maps them to HTTP codes.
var (
	ErrUnknownModel   = errors.New("unknown model")
	ErrUnknownVersion = errors.New("unknown model version")
)

// version is one loaded model version. It is immutable after load, except refs.
//
// Lifetime: the registry holds one reference while the version is in the current
// snapshot; every request holds one between acquire and release. When the count drops
// to zero the version is retired: its Predictor is closed. A request can only acquire a
// version whose count is above zero, so Close never races a Predict.
type version struct {
	model, version string
	dir            string
	stamp          string // fingerprint of model.yaml and the model file
	manifest       *Manifest
	pred           engine.Predictor
	info           engine.Info // pred.Info(), read once at load
	f32            bool        // assemble float32 rows (info.Float32Input)
	raw            bool        // default output when the request does not say
	nfeat          int
	names          []string             // feature names in column order
	cols           map[string]int       // request feature name → column
	labels         []map[string]float64 // per column, category label → code (labels.go); nil: none
	catNames       [][]string           // per column, the labels: the model's, or model.yaml's categories
	stored         []StoreColumn
	binding        FeatureBinding      // nil without store-backed features
	bg             backgroundPredictor // pred, when it can score on background threads; else nil
	ctxPred        ContextPredictor    // pred, when its calls can wait (score.go); else nil
	loadedAt       time.Time
	loadTime       time.Duration

	// attach holds the shadows and prediction log (attach.go); replaced by reloads.
	attach atomic.Pointer[attachments]

	// counts are the version's per-request metrics (metrics.go), shared with other
	// loads of the same model and version; nil for a registry without metrics.
	counts *seriesCounts
	met    *metrics

	refs atomic.Int64
	// psPerRow estimates the scoring time of one row in picoseconds (predict.go, observe).
	psPerRow atomic.Int64
}

// acquire takes a reference; false means the version already retired.
func (v *version) acquire() bool {
	for {
		n := v.refs.Load()
		if n <= 0 {
			return false
		}
		if v.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference and retires the version on the last one.
func (v *version) release() {
	switch n := v.refs.Add(-1); {
	case n == 0:
		if v.binding != nil {
			v.binding.Close()
		}
		v.pred.Close()
		if v.met != nil {
			v.met.releaseSeries(v.counts)
		}
	case n < 0:
		panic("BUG: version released more often than acquired")
	}
}

// failure is a version that did not load.
type failure struct {
	stamp string
	err   error
	at    time.Time
}

// modelSet is one model's versions in a snapshot.
type modelSet struct {
	name     string
	versions []*version // ascending version order; the last serves by default
	failed   map[string]failure
}

func (m *modelSet) latest() *version {
	if len(m.versions) == 0 {
		return nil
	}
	return m.versions[len(m.versions)-1]
}

func (m *modelSet) find(ver []byte) *version {
	for _, v := range m.versions {
		if v.version == string(ver) {
			return v
		}
	}
	return nil
}

// snapshot is an immutable view of the repository; reloads swap in a new one.
type snapshot struct {
	models map[string]*modelSet
	names  []string // sorted
	at     time.Time
	err    error // repository-level error of the last reload (unreadable directory)
}

// Registry loads the model repository and serves its versions to requests. Its methods
// are safe for concurrent use; reloads are serialized.
type Registry struct {
	fsys     fs.FS
	desc     string // the repository as shown in messages
	threads  int
	formats  map[string]FormatLoader // the built-in formats and Config.Formats
	store    FeatureStore
	storeGen map[string]string // the store's group generations, read at the start of each Reload (under reloadMu)
	maxFile  int64             // Config.MaxModelBytes
	log      *slog.Logger
	met      *metrics
	prod     *production // nil in Check: no shadows, logs or admission

	reloadMu sync.Mutex
	snap     atomic.Pointer[snapshot]
	loaded   atomic.Bool // the first reload finished
}

// newRegistry returns an empty registry over fsys; call Reload to load it. desc names
// the repository in messages (a directory path). It takes Threads, Formats,
// FeatureStore and Logger (nil: discard) from cfg; met may be nil (Check).
func newRegistry(fsys fs.FS, desc string, cfg *Config, met *metrics) (*Registry, error) {
	formats, err := formatTable(cfg.Formats)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxFile := cfg.MaxModelBytes
	if maxFile <= 0 {
		maxFile = DefaultMaxModelBytes
	}
	r := &Registry{fsys: fsys, desc: desc, threads: max(cfg.Threads, 1), formats: formats, store: cfg.FeatureStore,
		maxFile: maxFile, log: log, met: met}
	r.snap.Store(&snapshot{models: map[string]*modelSet{}})
	return r, nil
}

// acquire returns the version a request names (empty version: the highest) with a
// reference the caller must release.
func (r *Registry) acquire(model, ver []byte) (*version, error) {
	for {
		s := r.snap.Load()
		m := s.models[string(model)]
		if m == nil {
			if !r.loaded.Load() {
				// The model may be one the initial load has not reached yet.
				return nil, fmt.Errorf("%w (model %s; GET /readyz says when it is)", errNotReady, quoteName(model))
			}
			return nil, fmt.Errorf("%w %s (GET /v1/models lists the loaded ones)", ErrUnknownModel, quoteName(model))
		}
		var v *version
		if len(ver) == 0 {
			v = m.latest()
		} else {
			v = m.find(ver)
		}
		if v == nil {
			if len(ver) == 0 {
				return nil, fmt.Errorf("%w: model %q has no loaded version (see GET /v1/models/%s)", ErrUnknownVersion, model, model)
			}
			return nil, fmt.Errorf("%w %s of model %q (GET /v1/models/%s lists the loaded ones)", ErrUnknownVersion, quoteName(ver), model, model)
		}
		if v.acquire() {
			return v, nil
		}
		// Retired between the snapshot load and acquire: a newer snapshot is in place.
	}
}

// Ready reports whether the first load finished and at least one version serves.
func (r *Registry) Ready() bool {
	if !r.loaded.Load() {
		return false
	}
	for _, m := range r.snap.Load().models {
		if len(m.versions) > 0 {
			return true
		}
	}
	return false
}

// ReloadResult summarizes one reload.
type ReloadResult struct {
	Loaded   []string // "model/version" newly loaded or replaced
	Retired  []string
	Failed   []string // "model/version: error"
	Serving  int      // versions serving after the reload
	Duration time.Duration
	// Retry: a file changed while it was read (ErrChanging); the watcher reloads again
	// after its debounce.
	Retry bool
}

// Reload rescans the repository: new or changed versions load and warm while the old
// snapshot keeps serving, then the new snapshot swaps in atomically. A version that
// fails to load is recorded (Models shows it) and, when an older copy of it or other
// versions exist, those keep serving. Unchanged versions are kept as they are.
func (r *Registry) Reload() ReloadResult {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	start := time.Now()
	old := r.snap.Load()
	next := &snapshot{models: map[string]*modelSet{}, at: start}
	var res ReloadResult
	if r.store != nil {
		gen, err := r.store.ReloadGroups()
		if err != nil {
			err = fmt.Errorf("feature groups (the previous ones stay): %w", err)
			res.Failed = append(res.Failed, err.Error())
			r.log.Error("reload", "err", err)
		}
		r.storeGen = gen
	}

	entries, err := fs.ReadDir(r.fsys, ".")
	if err != nil {
		next.err = fmt.Errorf("reading model repository %s: %w", r.desc, err)
		res.Failed = append(res.Failed, next.err.Error())
		r.log.Error("reload", "err", next.err)
		// Keep serving what we have.
		next.models, next.names = old.models, old.names
		r.finish(old, next, &res, start)
		return res
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || skipName(name) {
			continue
		}
		m := &modelSet{name: name, failed: map[string]failure{}}
		oldM := old.models[name]
		vers, err := fs.ReadDir(r.fsys, name)
		if err != nil {
			m.failed[""] = failure{err: err, at: start}
		}
		for _, ve := range vers {
			vname := ve.Name()
			if !ve.IsDir() || skipName(vname) {
				continue
			}
			dir := path.Join(name, vname)
			stamp, man, err := r.fingerprint(dir)
			if err != nil {
				// Unreadable manifests and missing files stamp as their error, so an
				// unchanged failure is not logged and counted again on every reload.
				stamp = "error: " + err.Error()
			}
			var prev *version
			if oldM != nil {
				prev = oldM.find([]byte(vname))
			}
			if err == nil && prev != nil && prev.stamp == stamp {
				m.versions = append(m.versions, prev)
				continue
			}
			if oldM != nil {
				if f, ok := oldM.failed[vname]; ok && f.stamp == stamp {
					// Unchanged since it failed: don't retry, keep what served.
					m.failed[vname] = f
					if prev != nil {
						m.versions = append(m.versions, prev)
					}
					continue
				}
			}
			var v *version
			if err == nil {
				v, err = r.load(name, vname, dir, stamp, man)
			}
			if err != nil {
				if errors.Is(err, ErrChanging) {
					// Being rewritten: never "unchanged since it failed", so the next
					// reload tries again.
					stamp = fmt.Sprintf("changing: %d", time.Now().UnixNano())
					res.Retry = true
				}
				m.failed[vname] = failure{stamp: stamp, err: err, at: time.Now()}
				res.Failed = append(res.Failed, dir+": "+err.Error())
				r.log.Error("model load failed", "model", name, "version", vname, "err", err,
					"serving", prev != nil)
				if r.met != nil {
					r.met.loadErrors.Add(bg, 1, metric.WithAttributes(
						attribute.String("model", name), attribute.String("version", vname)))
				}
				if prev != nil {
					m.versions = append(m.versions, prev) // the old copy keeps serving
				}
				continue
			}
			res.Loaded = append(res.Loaded, dir)
			r.log.Info("model loaded", "model", name, "version", vname, "features", v.nfeat,
				"load_time", v.loadTime)
			m.versions = append(m.versions, v)
		}
		slices.SortFunc(m.versions, func(a, b *version) int { return compareVersions(a.version, b.version) })
		if len(m.versions) == 0 && len(m.failed) == 0 {
			m.failed[""] = failure{err: errors.New("no version directories (want " + name + "/<version>/model.yaml)"), at: start}
		}
		next.models[name] = m
		next.names = append(next.names, name)
	}
	slices.Sort(next.names)
	r.finish(old, next, &res, start)
	return res
}

// finish swaps next in and drops the registry's reference on versions it no longer holds.
func (r *Registry) finish(old, next *snapshot, res *ReloadResult, start time.Time) {
	keep := map[*version]bool{}
	for _, m := range next.models {
		for _, v := range m.versions {
			keep[v] = true
		}
	}
	res.Serving = len(keep)
	replaced, stale := r.attach(next)
	r.snap.Store(next)
	r.loaded.Store(true)
	for _, a := range replaced {
		a.retire()
	}
	for _, m := range old.models {
		for _, v := range m.versions {
			if !keep[v] {
				res.Retired = append(res.Retired, v.dir)
				r.log.Info("model retired", "model", v.model, "version", v.version)
				if a := v.attach.Swap(nil); a != nil {
					a.retire()
				}
				v.release()
			}
		}
	}
	closeLogs(stale, r.log)
	res.Duration = time.Since(start)
	if r.met != nil {
		outcome := "ok"
		if len(res.Failed) > 0 {
			outcome = "error"
		}
		r.met.reloads.Add(bg, 1, metric.WithAttributes(attribute.String("result", outcome)))
	}
}

// Close retires every version once its in-flight requests finish.
func (r *Registry) Close() {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.snap.Swap(&snapshot{models: map[string]*modelSet{}})
	// Shadows first: they hold references on other versions.
	for _, m := range old.models {
		for _, v := range m.versions {
			if a := v.attach.Swap(nil); a != nil {
				a.retire()
			}
		}
	}
	for _, m := range old.models {
		for _, v := range m.versions {
			v.release()
		}
	}
}

// skipName skips hidden entries: editor files and Kubernetes' ..data links.
func skipName(name string) bool { return strings.HasPrefix(name, ".") }

// compareVersions orders versions that are numbers, or dotted numbers ("1.5",
// "2.0.10"), by their numbers, part by part ("10" after "9", "1.10" after "1.9",
// "10" after "1.5", "2.0.1" after "2.0"), and before every other name, which compare
// as strings ("-3", "beta"). Equal numbers written differently ("01", "1") compare as
// strings.
func compareVersions(a, b string) int {
	da, db := dottedNumber(a), dottedNumber(b)
	switch {
	case da && db:
		pa, pb := strings.Split(a, "."), strings.Split(b, ".")
		for i := 0; i < len(pa) && i < len(pb); i++ {
			x, y := strings.TrimLeft(pa[i], "0"), strings.TrimLeft(pb[i], "0")
			if c := cmp.Compare(len(x), len(y)); c != 0 {
				return c
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(len(pa), len(pb)); c != 0 {
			return c
		}
		return strings.Compare(a, b) // "01" vs "1"
	case da:
		return -1
	case db:
		return 1
	}
	return strings.Compare(a, b)
}

// dottedNumber reports whether v is digits, or runs of digits joined by single dots.
func dottedNumber(v string) bool {
	run := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			run++
		case c == '.' && run > 0:
			run = 0
		default:
			return false
		}
	}
	return run > 0
}

// fingerprint reads a version's manifest and stamps it with the manifest bytes and the
// model file's size and modification time, so a reload only reloads what changed.
func (r *Registry) fingerprint(dir string) (string, *Manifest, error) {
	data, err := readLimited(r.fsys, path.Join(dir, "model.yaml"), MaxManifestBytes, "model.yaml's limit; larger manifests are not supported")
	if errors.Is(err, fs.ErrNotExist) {
		data, err = inferManifest(r.fsys, dir)
	}
	if err != nil {
		return "", nil, err
	}
	h := sha256.New()
	h.Write(data)
	man, err := parseManifest(data, r.formats)
	if err != nil {
		return hex.EncodeToString(h.Sum(nil)), nil, err
	}
	fi, err := fs.Stat(r.fsys, path.Join(dir, man.File))
	if err != nil {
		return "", nil, fmt.Errorf("model file %s: %w", man.File, err)
	}
	fmt.Fprintf(h, "\x00%d\x00%d", fi.Size(), fi.ModTime().UnixNano())
	for _, f := range man.Features {
		if f.Stored() { // re-bound when a group it binds changes
			fmt.Fprintf(h, "\x00group %s %s", f.Group, r.storeGen[f.Group])
		}
	}
	return hex.EncodeToString(h.Sum(nil)), man, nil
}

// inferredFormats maps a model file's extension to its format, for versions without a
// model.yaml. ONNX is not among them: its manifest must name the features.
var inferredFormats = map[string]string{".txt": "lightgbm", ".json": "xgboost", ".ubj": "xgboost"}

// inferManifest stands in for a missing model.yaml when the version directory holds
// exactly one model file whose format its extension names (model.txt: LightGBM;
// model.json, model.ubj: XGBoost): the manifest "format: F, file: NAME", with the
// features and output the model file gives. Anything else is the missing-manifest error,
// naming at most two of the files found: none, several, an ONNX model (whose manifest
// must name its features; a labels.txt beside it is not a LightGBM model), or a name
// that is not plain UTF-8.
func inferManifest(fsys fs.FS, dir string) ([]byte, error) {
	const missing = "model.yaml missing (want format, file, and optionally features and output)"
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, errors.New(missing)
	}
	var found []string
	n, format := 0, ""
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || skipName(name) {
			continue
		}
		ext := strings.ToLower(path.Ext(name))
		if ext == ".onnx" {
			return nil, errors.New(missing + "; an ONNX model needs one that names its features (docs/onnx.md)")
		}
		f, ok := inferredFormats[ext]
		if !ok {
			continue
		}
		if n++; len(found) < 2 {
			found = append(found, strconv.Quote(name))
		}
		if !utf8.ValidString(name) {
			format = "" // strconv.Quote's \xNN would read back as another name
		} else {
			format = f
		}
	}
	switch {
	case n == 0:
		return nil, errors.New(missing + "; no model file (.txt: LightGBM, .json or .ubj: XGBoost) to infer it from")
	case n == 1 && format != "":
		return fmt.Appendf(nil, "format: %s\nfile: %s\n", format, found[0]), nil
	case n == 1:
		return nil, errors.New(missing + "; the model file's name is not plain UTF-8")
	}
	return nil, fmt.Errorf("%s; %d files could be the model (%s, ...): write one that names it", missing, n, strings.Join(found, ", "))
}

// load builds and warms one version.
func (r *Registry) load(model, ver, dir, stamp string, man *Manifest) (*version, error) {
	start := time.Now()
	loader, ok := r.formats[man.Format]
	if !ok {
		return nil, fmt.Errorf("format %s is not supported in this build of predictd", shown(man.Format))
	}
	file := path.Join(dir, man.File)
	data, err := readLimited(r.fsys, file, r.maxFile, "--max-model-bytes")
	if err != nil {
		return nil, err
	}
	cols, err := expandFeatures(man, r.store)
	if err != nil {
		return nil, err
	}
	pred, err := loader(LoadRequest{Model: model, Version: ver, Manifest: man, Features: columnNames(cols), File: file,
		Data: data, Threads: r.threads})
	if err != nil {
		return nil, err
	}
	v, err := r.bind(model, ver, dir, stamp, man, cols, pred)
	if err != nil {
		pred.Close()
		return nil, err
	}
	if err := v.warm(); err != nil {
		if v.binding != nil {
			v.binding.Close()
		}
		pred.Close()
		return nil, fmt.Errorf("warm-up prediction failed: %w", err)
	}
	v.loadedAt = time.Now()
	v.loadTime = v.loadedAt.Sub(start)
	if r.met != nil {
		v.met, v.counts = r.met, r.met.acquire(model, ver)
	} else {
		v.counts = new(seriesCounts) // counted, never exported
	}
	v.refs.Store(1) // the registry's reference
	return v, nil
}

// bind checks the manifest against the model and builds the name → column map.
func (r *Registry) bind(model, ver, dir, stamp string, man *Manifest, cols []column, pred engine.Predictor) (*version, error) {
	nf, info := pred.NumFeatures(), pred.Info()
	v := &version{model: model, version: ver, dir: dir, stamp: stamp, manifest: man, pred: pred, info: info,
		f32: info.Float32Input, raw: man.Output == "raw", nfeat: nf}
	if len(cols) > 0 {
		if len(cols) != nf {
			return nil, fmt.Errorf("features: model.yaml lists %s but the model takes %d", describeColumns(man, cols), nf)
		}
		for i, c := range cols {
			v.names = append(v.names, c.name)
			if c.spec.Stored() && c.elem == 0 {
				v.stored = append(v.stored, StoreColumn{Column: i, Width: c.width, Spec: c.spec})
			}
		}
	} else {
		v.names = slices.Clone(pred.FeatureNames())
		if len(v.names) != nf {
			return nil, fmt.Errorf("the model file names %d features for %d columns; list them under features: in model.yaml", len(v.names), nf)
		}
	}
	// Category labels: the model file's, with model.yaml's categories over them.
	v.catNames = info.CategoryNames
	merged := false
	for i, c := range cols {
		if len(c.spec.Categories) == 0 {
			continue
		}
		if !merged { // a copy: the model's own slice stays as the engine made it
			v.catNames = make([][]string, nf)
			copy(v.catNames, info.CategoryNames)
			merged = true
		}
		v.catNames[i] = c.spec.Categories
	}
	v.labels = categoryCodes(v.catNames, nf)
	v.cols = make(map[string]int, nf)
	for i, n := range v.names {
		if j, dup := v.cols[n]; dup {
			return nil, fmt.Errorf("features %d and %d have the same name %s; rename them under features: in model.yaml", j, i, shown(n))
		}
		v.cols[n] = i
	}
	if len(v.stored) > 0 {
		if r.store == nil {
			return nil, fmt.Errorf("%w: features %s are store-backed (group/key) but predictd runs without a feature store",
				ErrNoFeatureStore, storedNames(v.stored))
		}
		b, err := r.store.Bind(model, ver, v.stored)
		if err != nil {
			return nil, fmt.Errorf("feature store: %w", err)
		}
		v.binding = b
	}
	if v.info.Backend == "" {
		v.info.Backend = "unknown"
	}
	// Only the engine's own Model: a loader's wrapper that embeds *engine.Model to change
	// how rows are scored inherits Info().Background and the background methods, and
	// would be bypassed by them (engine.Info.Background).
	if m, ok := pred.(*engine.Model); ok && info.Background {
		v.bg = m
	}
	// A predictor whose calls can wait gets the request's deadline as a context; a
	// wrapper's own PredictF32/PredictF64 are then bypassed the same way, so a wrapper
	// that embeds such a predictor must define the Context methods too (onnxformat.Model).
	v.ctxPred, _ = pred.(ContextPredictor)
	return v, nil
}

func storedNames(cols []StoreColumn) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(c.Spec.Name))
	}
	return b.String()
}

// warm scores a few all-missing rows so the first request does not pay for lazy
// initialization (page faults on the model's arrays, kernel selection).
func (v *version) warm() error {
	// Tree models are warmed on missing values (every default branch); other predictors
	// on zeros, which id inputs (embedding lookups) accept and NaN is not.
	fill := 0.0
	if v.info.MissingNaN {
		fill = math.NaN()
	}
	if v.f32 {
		return warmRows(v, float32(fill), engine.Predictor.PredictF32)
	}
	return warmRows(v, fill, engine.Predictor.PredictF64)
}

// warmRows scores 8 rows of fill in both output modes.
func warmRows[T float32 | float64](v *version, fill T, predict func(engine.Predictor, []T, int, []float64, bool) error) error {
	const rows = 8
	m := make([]T, rows*v.nfeat)
	for i := range m {
		m[i] = fill
	}
	out := make([]float64, rows*max(v.pred.NumOutputs(true), v.pred.NumOutputs(false)))
	for _, raw := range []bool{false, true} {
		if err := predict(v.pred, m, rows, out, raw); err != nil {
			return err
		}
	}
	return nil
}
