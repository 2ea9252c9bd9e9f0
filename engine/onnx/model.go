// Package onnx serves deep models (MLPs, two-tower, DLRM-style) through ONNX Runtime, on
// CPU or on an NVIDIA GPU (CUDA execution provider), behind the same engine.Predictor
// interface as the tree models.
//
// The sidecar gives a Model rows of features in its own order; Config maps them to the
// model's named input tensors ([N, F] or [N] of float32, float64, float16, int64 or int32
// ids, bool) and picks the output that is the score (a numeric tensor, or one class of a
// ZipMap). Models exported with a fixed batch size run in chunks of it. Input and output tensors
// live in C memory owned by the Model (pooled per concurrent call), so ONNX Runtime never
// keeps a pointer into Go memory after a call. With Config.Batching, concurrent Predict
// calls are merged into one run (dynamic batching).
package onnx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/predictd/predictd/engine"
)

// Errors, wrapped with context by the functions that return them. Shape errors wrap
// engine.ErrFeatureCount and engine.ErrShortOutput; Predict after Close returns
// engine.ErrClosed.
var (
	// ErrQueueFull: the batching queue is full; the sidecar answers 503. The message names
	// the setting to raise.
	ErrQueueFull = errors.New("onnx: batching queue is full")
	// ErrInvalidInput: a value cannot be fed to the model (an int64 id input got a value
	// that is not an integer); the sidecar answers 400.
	ErrInvalidInput = errors.New("onnx: invalid input value")
)

// pinMinValues is the batch size (rows × features) from which lending the caller's rows
// (a tensor created per call, ~0.5 µs more than the copying path's cached one in
// BenchmarkSmallMLPOverhead) beats copying them (~1 µs per 4096 float32 values).
const pinMinValues = 4096

// maxExactInt is 2^53: every integer of magnitude up to it is exact in float64, so an id
// feature within it converts to int64 without loss.
const maxExactInt = 1 << 53

// input is one input tensor of the model and the feature columns that fill it.
type input struct {
	name string
	kind elemKind
	cols []int // feature index of each column, len = the tensor's second dimension
	rank int   // 1: [N] (one feature), 2: [N, len(cols)]
}

// Model is an ONNX model loaded into an ONNX Runtime session. Predict methods are safe for
// concurrent use; Close must not race with them.
type Model struct {
	path     string
	features []string
	inputs   []input
	outName  string
	outKind  elemKind
	outRow   []int64 // output shape after the batch dimension
	outWidth int     // values per row in the output tensor; 0 when outDyn
	outIndex int     // the column that is the score, or -1 for all
	numOut   int
	// outDyn: the output's size is known only after a run (a ZipMap sequence, or a tensor
	// whose width the graph leaves open); ONNX Runtime allocates it and run reads the
	// outIndex column into the arena's dyn.
	outDyn    bool
	outZipMap bool  // outDyn, and the output is seq(map(class, probability))
	batchDim  int64 // fixed batch size of the model's inputs, or 0 when dynamic: rows run in chunks of it
	device    string

	// zeroCopy: PredictF32 lends the caller's rows to ONNX Runtime (pinned, for the call
	// only) instead of copying them, because the model's only input is float32 and takes
	// every feature in order; it does so from pinMinValues values (rows × features) up.
	zeroCopy     bool
	pinMinValues int

	sess   *ort.DynamicAdvancedSession
	arenas arenaPool
	batch  *batcher
	closed atomic.Bool
}

var _ engine.Predictor = (*Model)(nil)

// Load opens an ONNX model for serving. features is the sidecar's full feature order, the
// columns of the rows given to Predict; cfg maps them to the model's inputs. It checks the
// model's inputs and output against cfg and fails with an error that says what to change.
// It calls Init("") unless Init was called before.
func Load(modelPath string, cfg Config, features []string) (*Model, error) {
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return LoadData(modelPath, data, cfg, features)
}

// LoadData is Load for model bytes already in memory (the sidecar's model store);
// modelPath only names the model in messages and Path. data is only read during the call.
func LoadData(modelPath string, data []byte, cfg Config, features []string) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := Init(""); err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("onnx: %s is empty, not an ONNX model", modelPath)
	}
	if name, loc, ok := externalTensor(data); ok {
		// The tensor's name and the file's are the model's bytes: shown only when short
		// and plain.
		return nil, fmt.Errorf("onnx: %s keeps tensor %s in an external data file (%s), which predictd does not read (it loads a model from its own bytes); "+
			"save it as one file: onnx.save_model(model, path, save_as_external_data=False) (models under 2 GB)", modelPath, engine.ClipText(name), engine.ClipText(loc))
	}
	modelIn, modelOut, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "external data") {
			// ONNX Runtime would look for the files relative to the working directory, as
			// the model comes from memory: refuse it and say how to re-save it.
			return nil, fmt.Errorf("onnx: %s keeps tensors in external data files, which predictd does not read (it loads a model from its own bytes); "+
				"save it as one file: onnx.save_model(model, path, save_as_external_data=False) (models under 2 GB): %s", modelPath, ortReason(err.Error()))
		}
		return nil, fmt.Errorf("onnx: %s is not a loadable ONNX model: %w", modelPath, err)
	}
	m := &Model{path: modelPath, features: append([]string(nil), features...)}
	if err := m.mapInputs(cfg, modelIn); err != nil {
		return nil, fmt.Errorf("onnx: %s: %w", modelPath, err)
	}
	if err := m.mapOutput(cfg, modelOut); err != nil {
		return nil, fmt.Errorf("onnx: %s: %w", modelPath, err)
	}
	m.zeroCopy = len(m.inputs) == 1 && m.inputs[0].kind == kindF32 && m.inputs[0].rank == 2 &&
		m.batchDim == 0 && isIdentity(m.inputs[0].cols, len(features))
	m.pinMinValues = pinMinValues

	names := make([]string, len(m.inputs))
	for i, in := range m.inputs {
		names[i] = in.name
	}
	cuda, gpu, _ := parseDevice(cfg.Device)
	m.device = "cpu"
	if cuda {
		m.sess, err = newSession(data, names, m.outName, &cfg, true, gpu)
		if err == nil {
			m.device = "cuda:" + strconv.Itoa(gpu)
		} else {
			// Keep serving: a model configured for a GPU still answers on a host without
			// one (a developer laptop, a CPU-only replica), and says so.
			reason := ortReason(err.Error())
			slog.Warn("onnx: cuda requested but unavailable, serving on cpu",
				"model", modelPath, "device", cfg.Device, "reason", reason)
			m.device = fmt.Sprintf("cpu (%s requested: %s)", cfg.Device, reason)
		}
	}
	if m.sess == nil {
		m.sess, err = newSession(data, names, m.outName, &cfg, false, 0)
		if err != nil {
			return nil, fmt.Errorf("onnx: %s: creating the ONNX Runtime session: %w", modelPath, err)
		}
	}
	m.arenas.newFn = m.newArena
	if b := cfg.Batching; b != nil {
		bc := *b
		if m.batchDim != 0 {
			// A fixed batch size B: merged runs fill (and pad) one batch of B rows.
			if bc.MaxBatch == 0 {
				bc.MaxBatch = int(m.batchDim)
			}
			if int64(bc.MaxBatch) > m.batchDim {
				m.sess.Destroy()
				return nil, fmt.Errorf("onnx: %s: batching.max_batch %d, but the model has a fixed batch size of %d; set max_batch to at most %d (or leave it out), or re-export the model with a dynamic first axis",
					modelPath, bc.MaxBatch, m.batchDim, m.batchDim)
			}
		}
		m.batch = newBatcher(m, bc)
	}
	return m, nil
}

func newSession(data []byte, inputs []string, output string, cfg *Config, cuda bool, gpu int) (*ort.DynamicAdvancedSession, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	if cfg.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(cfg.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("intra_op_threads: %w", err)
		}
	}
	if cfg.InterOpThreads > 0 {
		if err := opts.SetInterOpNumThreads(cfg.InterOpThreads); err != nil {
			return nil, fmt.Errorf("inter_op_threads: %w", err)
		}
	}
	level, _ := parseGraphOptimization(cfg.GraphOptimization)
	ortLevel := map[graphOptimization]ort.GraphOptimizationLevel{
		graphOptDisable:  ort.GraphOptimizationLevelDisableAll,
		graphOptBasic:    ort.GraphOptimizationLevelEnableBasic,
		graphOptExtended: ort.GraphOptimizationLevelEnableExtended,
		graphOptAll:      ort.GraphOptimizationLevelEnableAll,
	}[level]
	if err := opts.SetGraphOptimizationLevel(ortLevel); err != nil {
		return nil, fmt.Errorf("graph_optimization: %w", err)
	}
	if cuda {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return nil, fmt.Errorf("cuda provider options: %w", err)
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": strconv.Itoa(gpu)}); err != nil {
			return nil, fmt.Errorf("cuda device_id %d: %w", gpu, err)
		}
		if err := opts.AppendExecutionProviderCUDA(co); err != nil {
			return nil, fmt.Errorf("cuda execution provider: %w", err)
		}
	}
	return ort.NewDynamicAdvancedSessionWithONNXData(data, inputs, []string{output}, opts)
}

// expandVectors replaces each name that is not a feature but whose elements NAME[0],
// NAME[1], ... are (a store-backed list or embedding, which the sidecar expands into
// consecutive columns) by those elements, so onnx.inputs can name a vector as a whole.
func expandVectors(names []string, featIdx map[string]int) []string {
	var out []string
	for i, f := range names {
		if _, ok := featIdx[f]; ok {
			if out != nil {
				out = append(out, f)
			}
			continue
		}
		if _, ok := featIdx[f+"[0]"]; !ok {
			if out != nil {
				out = append(out, f) // unknown: reported by the caller
			}
			continue
		}
		if out == nil {
			out = append(make([]string, 0, len(names)), names[:i]...)
		}
		for k := 0; ; k++ {
			e := f + "[" + strconv.Itoa(k) + "]"
			if _, ok := featIdx[e]; !ok {
				break
			}
			out = append(out, e)
		}
	}
	if out == nil {
		return names
	}
	return out
}

// elemName names an ONNX element type as onnx.inputs spells dtypes (float32, int64, ...),
// or ONNX's own name in lower case for the types predictd does not feed (string, uint8).
func elemName(t ort.TensorElementDataType) string {
	if k, ok := kinds[t]; ok {
		return k.name
	}
	return strings.ToLower(strings.TrimPrefix(t.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}

// describe names an input or output with its type and shape, for messages:
// "probabilities float32 [-1 3]", "output_probability sequence".
func describe(io ort.InputOutputInfo) string {
	switch io.OrtValueType {
	case ort.ONNXTypeTensor:
		return fmt.Sprintf("%s %s %v", io.Name, elemName(io.DataType), []int64(io.Dimensions))
	case ort.ONNXTypeSequence:
		return io.Name + " sequence"
	case ort.ONNXTypeMap:
		return io.Name + " map"
	}
	return io.Name + " " + strings.ToLower(strings.TrimPrefix(io.OrtValueType.String(), "ONNX_TYPE_"))
}

func describeAll(ios []ort.InputOutputInfo) string {
	s := make([]string, len(ios))
	for i, io := range ios {
		s[i] = describe(io)
	}
	return strings.Join(s, ", ")
}

// oneValuePerRow reports whether a tensor takes one value per row: [N] or [N, 1].
func oneValuePerRow(io ort.InputOutputInfo) bool {
	d := io.Dimensions
	return io.OrtValueType == ort.ONNXTypeTensor && (len(d) == 1 || len(d) == 2 && d[1] == 1)
}

func (m *Model) mapInputs(cfg Config, modelIn []ort.InputOutputInfo) error {
	byName := make(map[string]ort.InputOutputInfo, len(modelIn))
	names := make([]string, len(modelIn))
	for i, in := range modelIn {
		byName[in.Name] = in
		names[i] = in.Name
	}
	featIdx := make(map[string]int, len(m.features))
	for i, f := range m.features {
		if _, dup := featIdx[f]; dup {
			return fmt.Errorf("feature %q appears twice in the model's feature list", f)
		}
		featIdx[f] = i
	}
	inputs := cfg.Inputs
	if len(inputs) == 0 {
		byFeature := true
		for _, in := range modelIn {
			_, isFeature := featIdx[in.Name]
			byFeature = byFeature && isFeature && oneValuePerRow(in)
		}
		switch {
		case byFeature:
			// One input per column named after it (skl2onnx with one input per feature,
			// hummingbird): each takes its feature.
			for _, in := range modelIn {
				inputs = append(inputs, InputConfig{Name: in.Name, Features: []string{in.Name}})
			}
		case len(modelIn) == 1:
			inputs = []InputConfig{{Name: modelIn[0].Name, Features: m.features}}
		default:
			return fmt.Errorf("the model has %d inputs (%s); map each in onnx.inputs (inputs of one value per row named like features are mapped by name)",
				len(modelIn), describeAll(modelIn))
		}
	}
	for _, ic := range inputs {
		ic.Features = expandVectors(ic.Features, featIdx)
		info, ok := byName[ic.Name]
		if !ok {
			return fmt.Errorf("onnx.inputs names %q, but the model's inputs are %s", ic.Name, strings.Join(names, ", "))
		}
		in := input{name: ic.Name}
		if info.OrtValueType != ort.ONNXTypeTensor {
			return fmt.Errorf("input %q is a %s, not a tensor", ic.Name, describe(info))
		}
		k, ok := kinds[info.DataType]
		if !ok {
			return fmt.Errorf("input %q has element type %s; supported input types: float32, float64, float16, int64, int32, bool", ic.Name, elemName(info.DataType))
		}
		in.kind = k.kind
		if ic.DType != "" && canonicalDType(ic.DType) != k.name {
			return fmt.Errorf("onnx.inputs %q has dtype %s, but the model's input is %s", ic.Name, ic.DType, k.name)
		}
		dims := info.Dimensions
		switch len(dims) {
		case 1:
			if len(ic.Features) != 1 {
				return fmt.Errorf("input %q has shape %v (one value per row), but onnx.inputs maps %d features to it", ic.Name, dims, len(ic.Features))
			}
		case 2:
			if dims[1] > 0 && dims[1] != int64(len(ic.Features)) {
				return fmt.Errorf("input %q has shape %v, but onnx.inputs maps %d features to it", ic.Name, dims, len(ic.Features))
			}
		default:
			return fmt.Errorf("input %q has shape %v; only [batch] and [batch, features] inputs are supported", ic.Name, dims)
		}
		in.rank = len(dims)
		if dims[0] > 0 {
			if m.batchDim != 0 && m.batchDim != dims[0] {
				return fmt.Errorf("inputs disagree on the batch size (%d vs %d)", m.batchDim, dims[0])
			}
			m.batchDim = dims[0]
		}
		for _, f := range ic.Features {
			j, ok := featIdx[f]
			if !ok {
				return fmt.Errorf("input %q: feature %q is not one of the model's %d features", ic.Name, f, len(m.features))
			}
			in.cols = append(in.cols, j)
		}
		m.inputs = append(m.inputs, in)
	}
	if len(m.inputs) != len(modelIn) {
		var missing []string
		for _, n := range names {
			found := false
			for _, in := range m.inputs {
				found = found || in.name == n
			}
			if !found {
				missing = append(missing, n)
			}
		}
		return fmt.Errorf("model input(s) %s not mapped in onnx.inputs; every input needs features", strings.Join(missing, ", "))
	}
	return nil
}

func (m *Model) mapOutput(cfg Config, modelOut []ort.InputOutputInfo) error {
	names := make([]string, len(modelOut))
	for i, o := range modelOut {
		names[i] = o.Name
	}
	var info *ort.InputOutputInfo
	switch {
	case cfg.Output.Name != "":
		for i := range modelOut {
			if modelOut[i].Name == cfg.Output.Name {
				info = &modelOut[i]
			}
		}
		if info == nil {
			return fmt.Errorf("onnx.output.name %q, but the model's outputs are %s", cfg.Output.Name, strings.Join(names, ", "))
		}
	case len(modelOut) == 1:
		info = &modelOut[0]
	default:
		return fmt.Errorf("the model has %d outputs (%s); choose the score with onnx.output.name", len(modelOut), describeAll(modelOut))
	}
	m.outName = info.Name
	if info.OrtValueType == ort.ONNXTypeSequence {
		// skl2onnx's ZipMap: seq(map(class label, probability)), one map per row, read
		// after each run; only one class's probability, so the width is known now.
		if cfg.Output.Index == nil {
			return fmt.Errorf("output %q is a sequence of maps (skl2onnx's ZipMap: a {class: probability} map per row); "+
				"set onnx.output.index to the class's position among the sorted class labels, "+
				"or export with options={'zipmap': False} (zipmap=False) and pick the probabilities tensor", info.Name)
		}
		m.outDyn, m.outZipMap = true, true
		m.outIndex, m.numOut = *cfg.Output.Index, 1
		return nil
	}
	if info.OrtValueType != ort.ONNXTypeTensor {
		return fmt.Errorf("output %q is a %s, not a tensor; pick a numeric tensor output with onnx.output.name", info.Name, describe(*info))
	}
	k, ok := kinds[info.DataType]
	if !ok {
		var numeric []string
		for _, o := range modelOut {
			if _, ok := kinds[o.DataType]; ok && o.OrtValueType == ort.ONNXTypeTensor {
				numeric = append(numeric, o.Name)
			}
		}
		what := "element type " + elemName(info.DataType)
		if info.DataType == ort.TensorElementDataTypeString {
			what = "strings"
		}
		if len(numeric) == 0 {
			return fmt.Errorf("output %q holds %s, and the model has no numeric output (float32, float64, float16, int64, int32, bool) to score with", info.Name, what)
		}
		return fmt.Errorf("output %q holds %s; pick a numeric output: %s", info.Name, what, strings.Join(numeric, ", "))
	}
	m.outKind = k.kind
	if len(info.Dimensions) == 0 {
		return fmt.Errorf("output %q is a scalar; the score needs a batch dimension", info.Name)
	}
	m.outRow = append([]int64(nil), info.Dimensions[1:]...)
	m.outWidth = 1
	for _, d := range m.outRow {
		if d <= 0 {
			m.outDyn = true
		}
		m.outWidth *= int(d)
	}
	if m.outDyn {
		// The graph leaves the width open: ONNX Runtime allocates the output per run and
		// one column is read from it, checked against the actual width then.
		if cfg.Output.Index == nil {
			return fmt.Errorf("output %q has shape %v: its values per row are not fixed in the graph; set onnx.output.index to pick one", info.Name, info.Dimensions)
		}
		m.outRow, m.outWidth = nil, 0
		m.outIndex, m.numOut = *cfg.Output.Index, 1
		return nil
	}
	m.outIndex, m.numOut = -1, m.outWidth
	if p := cfg.Output.Index; p != nil {
		if *p >= m.outWidth {
			return fmt.Errorf("onnx.output.index %d, but output %q has %d values per row", *p, info.Name, m.outWidth)
		}
		m.outIndex, m.numOut = *p, 1
	}
	return nil
}

func isIdentity(cols []int, n int) bool {
	if len(cols) != n {
		return false
	}
	for i, c := range cols {
		if c != i {
			return false
		}
	}
	return true
}

// ortReason shortens an ONNX Runtime error to its message: the first line, without the
// "<source file>:<line> <function> [ONNXRuntimeError] : 1 : FAIL : " prefix.
func ortReason(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "[ONNXRuntimeError] : "); i >= 0 {
		rest := s[i+len("[ONNXRuntimeError] : "):]
		// rest is "<code> : <CODE NAME> : <message>".
		if parts := strings.SplitN(rest, " : ", 3); len(parts) == 3 {
			s = parts[2]
		}
	}
	return strings.TrimSpace(s)
}

func (m *Model) newArena() *arena {
	a := &arena{
		in:   make([]cbuf, len(m.inputs)),
		ins:  make([]ort.Value, len(m.inputs)),
		outs: make([]ort.Value, 1),
		out:  cbuf{kind: m.outKind, row: m.outRow, width: m.outWidth},
	}
	for i, in := range m.inputs {
		a.in[i] = cbuf{kind: in.kind, width: len(in.cols)}
		if in.rank == 2 {
			a.in[i].row = []int64{int64(len(in.cols))}
		}
	}
	return a
}

// NumFeatures returns the number of values in an input row (the sidecar's feature order).
func (m *Model) NumFeatures() int { return len(m.features) }

// NumOutputs returns the values Predict writes per row: 1 with Config.Output.Index set,
// else the output tensor's values per row. raw makes no difference: the ONNX graph
// already ends in whatever transform the model was exported with.
func (m *Model) NumOutputs(raw bool) int { return m.numOut }

// FeatureNames returns the feature order of input rows. It must not be modified.
func (m *Model) FeatureNames() []string { return m.features }

// InputFloat32 reports whether float32 rows lose nothing (the sidecar then assembles
// float32 rows and calls PredictF32): true unless an input is float64 (float32 would
// round it) or takes int64 or int32 ids, which float32 holds exactly only up to 2^24.
func (m *Model) InputFloat32() bool {
	for _, in := range m.inputs {
		if in.kind == kindI64 || in.kind == kindI32 || in.kind == kindF64 {
			return false
		}
	}
	return true
}

// Device returns where the model runs: "cpu", "cuda:0", or "cpu (cuda requested: <why
// not>)" after a fallback.
func (m *Model) Device() string { return m.device }

// Info describes the model for the sidecar (see engine.Info): backend "onnx/DEVICE",
// float32 rows when InputFloat32, zeros rather than NaN for warming (id inputs reject
// NaN), no background threads.
func (m *Model) Info() engine.Info {
	return engine.Info{Backend: "onnx/" + m.device, Device: m.device, Float32Input: m.InputFloat32()}
}

// Path returns the model file (or LoadData's name) the Model was loaded from.
func (m *Model) Path() string { return m.path }

// PredictF32 scores nrows row-major rows of NumFeatures values into out (nrows ×
// NumOutputs values). The rows are read only during the call. Safe for concurrent use;
// with batching, concurrent calls run together.
func (m *Model) PredictF32(rows []float32, nrows int, out []float64, raw bool) error {
	return m.PredictF32Context(context.Background(), rows, nrows, out)
}

// PredictF64 is PredictF32 for float64 rows; values are rounded to float32 (the model's
// input type), ids are converted exactly.
func (m *Model) PredictF64(rows []float64, nrows int, out []float64, raw bool) error {
	return m.PredictF64Context(context.Background(), rows, nrows, out)
}

// PredictF32Context is PredictF32 with a context: a call that waits in the batching queue
// returns ctx.Err() when ctx ends first. A run that has started is not interrupted.
func (m *Model) PredictF32Context(ctx context.Context, rows []float32, nrows int, out []float64) error {
	if err := m.checkShape(len(rows), nrows, len(out)); err != nil || nrows == 0 {
		return err
	}
	if m.batch != nil && nrows < m.batch.maxBatch {
		return m.batch.submit(ctx, rows, nil, nrows, out)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.zeroCopy && nrows*len(m.features) >= m.pinMinValues {
		return m.predictPinned(rows, nrows, out)
	}
	return predictCopy(m, rows, nrows, out)
}

// PredictF64Context is PredictF64 with a context (see PredictF32Context).
func (m *Model) PredictF64Context(ctx context.Context, rows []float64, nrows int, out []float64) error {
	if err := m.checkShape(len(rows), nrows, len(out)); err != nil || nrows == 0 {
		return err
	}
	if m.batch != nil && nrows < m.batch.maxBatch {
		return m.batch.submit(ctx, nil, rows, nrows, out)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return predictCopy(m, rows, nrows, out)
}

func (m *Model) checkShape(nvals, nrows, nout int) error {
	if m.closed.Load() {
		return engine.ErrClosed
	}
	f := len(m.features)
	if nrows < 0 || nvals != nrows*f {
		return fmt.Errorf("%w: %d values for %d rows; the model takes %d features per row",
			engine.ErrFeatureCount, nvals, nrows, f)
	}
	if need := nrows * m.numOut; nout < need {
		return fmt.Errorf("%w: %d values for %d rows × %d outputs", engine.ErrShortOutput, nout, nrows, m.numOut)
	}
	return nil
}

// predictCopy runs rows through a pooled arena: copy in, run, copy out.
func predictCopy[T float32 | float64](m *Model, rows []T, nrows int, out []float64) error {
	a := m.arenas.get()
	defer m.arenas.put(a)
	if m.batchDim > 0 {
		return predictChunks(m, a, rows, nrows, out)
	}
	if err := a.prepare(nrows); err != nil {
		return err
	}
	if err := fillParallel(m, a, rows, nrows); err != nil {
		return err
	}
	if err := m.run(a, nrows); err != nil {
		return err
	}
	m.copyOut(a, 0, nrows, out)
	return nil
}

// predictChunks scores rows with a model exported with a fixed batch size B (torch.onnx
// without dynamic_axes): B rows per run, the last chunk padded with zero rows whose
// scores are dropped.
func predictChunks[T float32 | float64](m *Model, a *arena, rows []T, nrows int, out []float64) error {
	b, f := int(m.batchDim), len(m.features)
	if err := a.prepare(b); err != nil {
		return err
	}
	for lo := 0; lo < nrows; lo += b {
		n := min(b, nrows-lo)
		if err := fill(m, a, 0, rows[lo*f:(lo+n)*f], n, lo); err != nil {
			return err
		}
		if n < b {
			zeroRows(a, n, b-n)
		}
		if err := m.run(a, b); err != nil {
			return err
		}
		m.copyOut(a, 0, n, out[lo*m.numOut:])
	}
	return nil
}

// predictPinned lends the caller's rows to ONNX Runtime for the duration of the call:
// the memory is pinned, the tensor over it is destroyed before the pin is released, and
// nothing in C keeps the pointer afterwards. It saves copying N×F values, which matters
// on a GPU where the run itself takes about as long as the copy.
func (m *Model) predictPinned(rows []float32, nrows int, out []float64) error {
	a := m.arenas.get()
	defer m.arenas.put(a)
	a.outs[0] = nil
	if !m.outDyn {
		if err := a.out.prepare(nrows); err != nil {
			return err
		}
		a.outs[0] = a.out.t
	}
	var pin runtime.Pinner
	pin.Pin(&rows[0])
	defer pin.Unpin()
	t, err := ort.NewTensor(ort.NewShape(int64(nrows), int64(len(m.features))), rows)
	if err != nil {
		return fmt.Errorf("onnx: creating the input tensor: %w", err)
	}
	defer t.Destroy() // runs before Unpin (defers are last in, first out)
	a.ins[0] = t
	err = m.run(a, nrows)
	a.ins[0] = nil
	if err != nil {
		return err
	}
	m.copyOut(a, 0, nrows, out)
	return nil
}

// run runs a's tensors (nrows rows). A dynamic output is allocated by ONNX Runtime,
// read into a.dyn and destroyed.
func (m *Model) run(a *arena, nrows int) error {
	if err := m.sess.Run(a.ins, a.outs); err != nil {
		return fmt.Errorf("onnx: %s: %w", m.path, err)
	}
	if !m.outDyn {
		return nil
	}
	v := a.outs[0]
	a.outs[0] = nil
	defer v.Destroy()
	if err := m.readDynamic(v, nrows, a); err != nil {
		return fmt.Errorf("onnx: %s: output %q: %w", m.path, m.outName, err)
	}
	return nil
}

// readDynamic copies the outIndex value of each row of v (nrows rows) into a.dyn.
func (m *Model) readDynamic(v ort.Value, nrows int, a *arena) error {
	a.dyn = slices.Grow(a.dyn[:0], nrows)[:nrows]
	if !m.outZipMap {
		shape := v.GetShape()
		if len(shape) == 0 || shape[0] != int64(nrows) {
			return fmt.Errorf("shape %v for %d rows", shape, nrows)
		}
		n := tensorLen(v)
		w := n / nrows
		if m.outIndex >= w {
			return fmt.Errorf("onnx.output.index %d, but the output has %d values per row (shape %v)", m.outIndex, w, shape)
		}
		for r := range nrows {
			x, _, err := tensorAt(v, r*w+m.outIndex)
			if err != nil {
				return err
			}
			a.dyn[r] = x
		}
		return nil
	}
	seq, ok := v.(*ort.Sequence)
	if !ok {
		return fmt.Errorf("is a %T, not a sequence", v)
	}
	maps, err := seq.GetValues()
	if err != nil {
		return err
	}
	if len(maps) != nrows {
		return fmt.Errorf("%d maps for %d rows", len(maps), nrows)
	}
	for r, e := range maps {
		mp, ok := e.(*ort.Map)
		if !ok {
			return fmt.Errorf("row %d is a %T, not a map", r, e)
		}
		_, vals, err := mp.GetKeysAndValues()
		if err != nil {
			return err
		}
		x, n, err := tensorAt(vals, m.outIndex)
		if err != nil {
			return err
		}
		if m.outIndex >= n {
			return fmt.Errorf("onnx.output.index %d, but the map of row %d has %d classes", m.outIndex, r, n)
		}
		a.dyn[r] = x
	}
	return nil
}

// tensorLen is the number of elements of a tensor value.
func tensorLen(v ort.Value) int {
	n := 1
	for _, d := range v.GetShape() {
		n *= int(d)
	}
	return n
}

// tensorAt returns element i of a numeric tensor that ONNX Runtime allocated (0 when i
// is out of range) and its element count.
func tensorAt(v ort.Value, i int) (float64, int, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return at(t.GetData(), i, func(x float32) float64 { return float64(x) })
	case *ort.Tensor[float64]:
		return at(t.GetData(), i, func(x float64) float64 { return x })
	case *ort.Tensor[int64]:
		return at(t.GetData(), i, func(x int64) float64 { return float64(x) })
	case *ort.Tensor[int32]:
		return at(t.GetData(), i, func(x int32) float64 { return float64(x) })
	case *ort.Tensor[bool]:
		return at(t.GetData(), i, func(x bool) float64 { return b2f(x) })
	case *ort.CustomDataTensor:
		if ort.TensorElementDataType(t.DataType()) == ort.TensorElementDataTypeFloat16 {
			d := t.GetData()
			n := len(d) / 2
			if i >= n {
				return 0, n, nil
			}
			return float64(float16.Frombits(uint16(d[2*i]) | uint16(d[2*i+1])<<8).Float32()), n, nil
		}
	}
	return 0, 0, fmt.Errorf("values of type %T are not numbers predictd reads", v)
}

func at[T any](d []T, i int, conv func(T) float64) (float64, int, error) {
	if i >= len(d) {
		return 0, len(d), nil
	}
	return conv(d[i]), len(d), nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// fillParallel is fill(m, a, 0, rows, nrows, 0) split across goroutines when the batch is
// big enough to be worth it (see parallelFillValues).
func fillParallel[T float32 | float64](m *Model, a *arena, rows []T, nrows int) error {
	f := len(m.features)
	parts := min(runtime.GOMAXPROCS(0), nrows*f/parallelFillValues)
	if parts <= 1 {
		return fill(m, a, 0, rows, nrows, 0)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	chunk := (nrows + parts - 1) / parts
	for p := range parts {
		lo, hi := p*chunk, min((p+1)*chunk, nrows)
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = fill(m, a, lo, rows[lo*f:hi*f], hi-lo, lo)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fill copies nrows caller rows into rows [off, off+nrows) of a's input buffers, which
// must be prepared for at least off+nrows rows. It fails on an id that is not an integer;
// the error numbers the row firstRow+r.
func fill[T float32 | float64](m *Model, a *arena, off int, rows []T, nrows, firstRow int) error {
	f := len(m.features)
	for i := range m.inputs {
		in := &m.inputs[i]
		k := len(in.cols)
		switch in.kind {
		case kindF32:
			dst := a.in[i].f32(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					d[j] = float32(row[c])
				}
			}
		case kindI64:
			dst := a.in[i].i64(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					v := float64(row[c])
					// The comparisons are false for NaN, so NaN is rejected too.
					if !(v >= -maxExactInt && v <= maxExactInt && v == math.Trunc(v)) {
						return fmt.Errorf("%w: row %d, feature %q = %v: input %q takes int64 ids, and this is not an integer",
							ErrInvalidInput, firstRow+r, m.features[c], v, in.name)
					}
					d[j] = int64(v)
				}
			}
		case kindF64:
			dst := a.in[i].f64(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					d[j] = float64(row[c])
				}
			}
		case kindF16:
			dst := a.in[i].u16(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					d[j] = float16.Fromfloat32(float32(row[c])).Bits()
				}
			}
		case kindI32:
			dst := a.in[i].i32(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					v := float64(row[c])
					if v != math.Trunc(v) || math.IsNaN(v) {
						return fmt.Errorf("%w: row %d, feature %q = %v: input %q takes int32 values, and this is not an integer",
							ErrInvalidInput, firstRow+r, m.features[c], v, in.name)
					}
					if v < math.MinInt32 || v > math.MaxInt32 {
						return fmt.Errorf("%w: row %d, feature %q = %v: input %q takes int32 values, and this is out of the int32 range",
							ErrInvalidInput, firstRow+r, m.features[c], v, in.name)
					}
					d[j] = int32(v)
				}
			}
		case kindBool:
			dst := a.in[i].bools(off + nrows)[off*k:]
			for r := 0; r < nrows; r++ {
				row, d := rows[r*f:(r+1)*f], dst[r*k:(r+1)*k]
				for j, c := range in.cols {
					switch v := float64(row[c]); v {
					case 0, 1:
						d[j] = v == 1
					default:
						return fmt.Errorf("%w: row %d, feature %q = %v: input %q is bool and takes 0 or 1",
							ErrInvalidInput, firstRow+r, m.features[c], v, in.name)
					}
				}
			}
		}
	}
	return nil
}

// copyOut writes the scores of rows [off, off+nrows) of a's output into out.
func (m *Model) copyOut(a *arena, off, nrows int, out []float64) {
	w := m.outWidth
	switch {
	case m.outDyn:
		copy(out[:nrows], a.dyn[off:off+nrows])
	case m.outKind != kindF32 && m.outKind != kindF64:
		for r := 0; r < nrows; r++ {
			if m.outIndex >= 0 {
				out[r] = a.out.at(off+nrows, (off+r)*w+m.outIndex)
				continue
			}
			for j := range w {
				out[r*w+j] = a.out.at(off+nrows, (off+r)*w+j)
			}
		}
	case m.outKind == kindF32 && m.outIndex >= 0:
		src := a.out.f32(off + nrows)[off*w:]
		for r := 0; r < nrows; r++ {
			out[r] = float64(src[r*w+m.outIndex])
		}
	case m.outKind == kindF32:
		src := a.out.f32(off + nrows)[off*w:]
		for i := range nrows * w {
			out[i] = float64(src[i])
		}
	case m.outIndex >= 0:
		src := a.out.f64(off + nrows)[off*w:]
		for r := 0; r < nrows; r++ {
			out[r] = src[r*w+m.outIndex]
		}
	default:
		copy(out[:nrows*w], a.out.f64(off + nrows)[off*w:])
	}
}

// Close stops the batcher (queued calls get engine.ErrClosed), releases the session and
// frees the tensor buffers. It must not run concurrently with Predict (the registry
// retires a model only after its last request has finished); Predict after Close returns
// engine.ErrClosed.
func (m *Model) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	if m.batch != nil {
		m.batch.close()
	}
	m.arenas.close()
	return m.sess.Destroy()
}
