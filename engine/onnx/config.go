package onnx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the `onnx:` section of a model.yaml. The zero value is usable for a model with
// one float32 input that takes every feature in order and one output.
type Config struct {
	// Inputs maps the model's named input tensors to features. Every input of the model
	// must be listed. Default (empty): inputs of one value per row ([N] or [N, 1]) that
	// are all named like features take each its feature; else the model must have
	// exactly one input, which takes all features in the sidecar's order.
	Inputs []InputConfig `yaml:"inputs"`
	// Output selects the score. Default: the model's only output.
	Output OutputConfig `yaml:"output"`
	// Device is "cpu" (default), "cuda" (GPU 0) or "cuda:N". On a host without a usable
	// GPU a cuda model is served on CPU; Model.Device says so.
	Device string `yaml:"device"`
	// IntraOpThreads is ONNX Runtime's thread count inside one operator; default 0 lets
	// ONNX Runtime pick (one per physical core).
	IntraOpThreads int `yaml:"intra_op_threads"`
	// InterOpThreads is ONNX Runtime's thread count across independent operators; default
	// 0 lets ONNX Runtime pick. Only used by graphs with parallel branches.
	InterOpThreads int `yaml:"inter_op_threads"`
	// GraphOptimization is disable, basic, extended or all (default).
	GraphOptimization string `yaml:"graph_optimization"`
	// Batching merges concurrent Predict calls into one run; nil (default) runs each call
	// on its own.
	Batching *BatchingConfig `yaml:"batching"`
}

// InputConfig maps one input tensor of the model to features. The tensor is dense
// [N, len(Features)] (or [N] for one feature): row r, column c holds feature Features[c]
// of row r.
type InputConfig struct {
	// Name is the input tensor's name in the ONNX graph.
	Name string `yaml:"name"`
	// DType is float32, float64, float16, int64, int32 or bool (ONNX's names float,
	// double and half are accepted too); default: the model's type for this input (set,
	// it must agree). Every input takes its values from the same
	// feature rows: floats are rounded to the input's precision; an int64 or int32 input
	// (embedding ids for a Gather, categorical codes) takes integers, a bool input 0 or 1;
	// any other value is an ErrInvalidInput.
	DType string `yaml:"dtype"`
	// Features names the columns in order; each must be one of the model's features.
	Features []string `yaml:"features"`
}

// OutputConfig selects the score from the model's outputs.
type OutputConfig struct {
	// Name is the output tensor; default: the model's only output.
	Name string `yaml:"name"`
	// Index picks one column of an [N, K] output (e.g. 1 for the positive class of a
	// softmax); default: all K columns, so NumOutputs is K. For a ZipMap output
	// (skl2onnx's seq(map(class, probability))) it is the class's position among the
	// sorted class labels, and required.
	Index *int `yaml:"index"`
}

// BatchingConfig configures dynamic batching (the Triton idea): concurrent Predict calls
// wait up to MaxQueueDelayUs for others and run as one batch of at most MaxBatch rows;
// each caller gets its own rows back.
type BatchingConfig struct {
	// MaxBatch is the most rows in one merged run; default 1024. A call with MaxBatch
	// rows or more runs on its own, without waiting.
	MaxBatch int `yaml:"max_batch"`
	// MaxQueueDelayUs is how long the first request of a batch waits for others, in
	// microseconds; default 0: take what is already queued and run at once (requests
	// still merge while the previous batch runs).
	MaxQueueDelayUs int `yaml:"max_queue_delay_us"`
	// QueueSize is how many requests may wait; default 1024. A call that finds the queue
	// full fails with ErrQueueFull at once.
	QueueSize int `yaml:"queue_size"`
}

// Bounds on settings, so that a typo cannot allocate gigabytes or stall callers for
// minutes.
const (
	maxThreads       = 1024
	maxBatchRows     = 1 << 20
	maxQueueRequests = 1 << 20
	maxQueueDelayUs  = 1_000_000 // one second
)

const (
	defaultMaxBatch  = 1024
	defaultQueueSize = 1024
)

// ParseConfig decodes the YAML of an `onnx:` section; unknown keys are errors. It checks
// everything that does not need the model file (Load checks the rest).
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("onnx config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ParseConfigNode is ParseConfig for an `onnx:` section that a caller already decoded as
// a yaml.Node (yaml.v3's Node.Decode would not reject unknown keys). A nil node is the zero
// Config.
func ParseConfigNode(n *yaml.Node) (Config, error) {
	if n == nil || n.Kind == 0 {
		return ParseConfig(nil)
	}
	data, err := yaml.Marshal(n)
	if err != nil {
		return Config{}, fmt.Errorf("onnx config: %w", err)
	}
	return ParseConfig(data)
}

// Validate checks the settings that do not depend on the model file.
func (c *Config) Validate() error {
	seen := make(map[string]bool, len(c.Inputs))
	for i, in := range c.Inputs {
		if in.Name == "" {
			return fmt.Errorf("onnx config: inputs[%d]: name is empty", i)
		}
		if seen[in.Name] {
			return fmt.Errorf("onnx config: input %q is listed twice", in.Name)
		}
		seen[in.Name] = true
		switch canonicalDType(in.DType) {
		case "", dtypeFloat32, dtypeFloat64, dtypeFloat16, dtypeInt64, dtypeInt32, dtypeBool:
		default:
			return fmt.Errorf("onnx config: input %q: dtype %q (want float32, float64, float16, int64, int32 or bool)", in.Name, in.DType)
		}
		if len(in.Features) == 0 {
			return fmt.Errorf("onnx config: input %q: features is empty", in.Name)
		}
		for j, f := range in.Features {
			if f == "" {
				return fmt.Errorf("onnx config: input %q: features[%d] is empty", in.Name, j)
			}
		}
	}
	if c.Output.Index != nil && *c.Output.Index < 0 {
		return fmt.Errorf("onnx config: output.index %d is negative", *c.Output.Index)
	}
	if _, _, err := parseDevice(c.Device); err != nil {
		return err
	}
	if c.IntraOpThreads < 0 || c.IntraOpThreads > maxThreads {
		return fmt.Errorf("onnx config: intra_op_threads %d (want 0..%d; 0 = ONNX Runtime's default)", c.IntraOpThreads, maxThreads)
	}
	if c.InterOpThreads < 0 || c.InterOpThreads > maxThreads {
		return fmt.Errorf("onnx config: inter_op_threads %d (want 0..%d; 0 = ONNX Runtime's default)", c.InterOpThreads, maxThreads)
	}
	if _, err := parseGraphOptimization(c.GraphOptimization); err != nil {
		return err
	}
	if b := c.Batching; b != nil {
		if b.MaxBatch < 0 || b.MaxBatch > maxBatchRows {
			return fmt.Errorf("onnx config: batching.max_batch %d (want 1..%d rows; 0 = %d)", b.MaxBatch, maxBatchRows, defaultMaxBatch)
		}
		if b.MaxQueueDelayUs < 0 || b.MaxQueueDelayUs > maxQueueDelayUs {
			return fmt.Errorf("onnx config: batching.max_queue_delay_us %d (want 0..%d)", b.MaxQueueDelayUs, maxQueueDelayUs)
		}
		if b.QueueSize < 0 || b.QueueSize > maxQueueRequests {
			return fmt.Errorf("onnx config: batching.queue_size %d (want 1..%d requests; 0 = %d)", b.QueueSize, maxQueueRequests, defaultQueueSize)
		}
	}
	return nil
}

const (
	dtypeFloat32 = "float32"
	dtypeFloat64 = "float64"
	dtypeFloat16 = "float16"
	dtypeInt64   = "int64"
	dtypeInt32   = "int32"
	dtypeBool    = "bool"
)

// canonicalDType maps ONNX's own names of element types (float, double, float16's
// "half" in numpy) to the dtype names used here; other names are returned as they are.
func canonicalDType(s string) string {
	switch s {
	case "float":
		return dtypeFloat32
	case "double":
		return dtypeFloat64
	case "half":
		return dtypeFloat16
	}
	return s
}

// parseDevice splits "cpu", "cuda" or "cuda:N" into (cuda, device id).
func parseDevice(s string) (cuda bool, id int, err error) {
	switch {
	case s == "" || s == "cpu":
		return false, 0, nil
	case s == "cuda":
		return true, 0, nil
	case strings.HasPrefix(s, "cuda:"):
		n, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || n < 0 || n > 1023 {
			return false, 0, fmt.Errorf("onnx config: device %q: want cuda:N with N a GPU index", s)
		}
		return true, n, nil
	}
	return false, 0, fmt.Errorf("onnx config: device %q (want cpu, cuda or cuda:N)", s)
}

// graphOptimization mirrors ort.GraphOptimizationLevel without importing it here, so the
// config can be parsed (and fuzzed) without loading ONNX Runtime.
type graphOptimization int

const (
	graphOptDisable graphOptimization = iota
	graphOptBasic
	graphOptExtended
	graphOptAll
)

func parseGraphOptimization(s string) (graphOptimization, error) {
	switch s {
	case "", "all":
		return graphOptAll, nil
	case "disable":
		return graphOptDisable, nil
	case "basic":
		return graphOptBasic, nil
	case "extended":
		return graphOptExtended, nil
	}
	return 0, fmt.Errorf("onnx config: graph_optimization %q (want disable, basic, extended or all)", s)
}
