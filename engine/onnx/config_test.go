package onnx

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseConfig(t *testing.T) {
	ok := func(in string, check func(Config) bool) {
		t.Helper()
		cfg, err := ParseConfig([]byte(in))
		if err != nil {
			t.Fatalf("ParseConfig(%q): %v", in, err)
		}
		if !check(cfg) {
			t.Fatalf("ParseConfig(%q) = %+v", in, cfg)
		}
	}
	bad := func(in, want string) {
		t.Helper()
		_, err := ParseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseConfig(%q) error %v, want one mentioning %q", in, err, want)
		}
	}
	ok("", func(c Config) bool { return len(c.Inputs) == 0 && c.Batching == nil })
	ok(`
inputs:
  - {name: dense, dtype: float32, features: [d0, d1]}
  - {name: ids, dtype: int64, features: [user_id, item_id]}
output: {name: probs, index: 1}
device: cuda:1
intra_op_threads: 4
inter_op_threads: 1
graph_optimization: extended
batching: {max_batch: 8192, max_queue_delay_us: 500, queue_size: 64}
`, func(c Config) bool {
		return len(c.Inputs) == 2 && c.Inputs[1].DType == "int64" && c.Inputs[1].Features[1] == "item_id" &&
			c.Output.Name == "probs" && *c.Output.Index == 1 && c.Device == "cuda:1" &&
			c.IntraOpThreads == 4 && c.GraphOptimization == "extended" &&
			c.Batching.MaxBatch == 8192 && c.Batching.MaxQueueDelayUs == 500 && c.Batching.QueueSize == 64
	})
	ok("batching: {}", func(c Config) bool { return c.Batching != nil && c.Batching.MaxBatch == 0 })

	bad("inputs: [{name: x, features: [a]}]\nmodel: foo", "field model not found")
	bad("inputs: [{name: x, feature: [a]}]", "field feature not found")
	bad("batching: {max_batch: 10, delay: 5}", "field delay not found")
	bad("inputs: [{features: [a]}]", "name is empty")
	bad("inputs: [{name: x, features: [a]}, {name: x, features: [b]}]", `"x" is listed twice`)
	bad("inputs: [{name: x, dtype: float8, features: [a]}]", "want float32, float64, float16, int64, int32 or bool")
	bad("inputs: [{name: x}]", "features is empty")
	bad("inputs: [{name: x, features: [a, '']}]", "features[1] is empty")
	bad("output: {index: -1}", "negative")
	bad("device: gpu", "want cpu, cuda or cuda:N")
	bad("device: cuda:x", "cuda:N")
	bad("device: 'cuda:-1'", "cuda:N")
	bad("intra_op_threads: -1", "intra_op_threads")
	bad("inter_op_threads: 100000", "inter_op_threads")
	bad("graph_optimization: max", "want disable, basic, extended or all")
	bad("batching: {max_batch: -1}", "max_batch")
	bad("batching: {max_batch: 100000000}", "max_batch")
	bad("batching: {max_queue_delay_us: 2000000}", "max_queue_delay_us")
	bad("batching: {queue_size: -5}", "queue_size")
	bad("inputs: {name: x}", "cannot unmarshal")
	bad("[1, 2", "onnx config")
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("inputs: [{name: dense, dtype: float32, features: [d0, d1]}, {name: ids, dtype: int64, features: [u]}]\noutput: {name: probs, index: 1}\n"))
	f.Add([]byte("device: cuda:3\nbatching: {max_batch: 64, max_queue_delay_us: 100, queue_size: 8}\n"))
	f.Add([]byte("graph_optimization: basic\nintra_op_threads: 2\n"))
	f.Add([]byte("inputs: [{name: x, features: [a, a, b]}]\n"))
	f.Add([]byte("inputs: [{name: f0, dtype: float64, features: [f0]}, {name: h, dtype: float16, features: [b]}, {name: c, dtype: int32, features: [c]}, {name: flag, dtype: bool, features: [d]}]\n"))
	f.Add([]byte("output: {name: output_probability, index: 2}\nbatching: {max_batch: 16}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		// What ParseConfig accepts must be valid and usable without further checks.
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		if _, _, err := parseDevice(cfg.Device); err != nil {
			t.Fatal(err)
		}
		if b := cfg.Batching; b != nil && (b.MaxBatch > maxBatchRows || b.QueueSize > maxQueueRequests) {
			t.Fatalf("accepted unbounded batching %+v", *b)
		}
	})
}

func TestParseConfigNode(t *testing.T) {
	var doc struct {
		Format string    `yaml:"format"`
		ONNX   yaml.Node `yaml:"onnx"`
	}
	f := func(in, wantErr string) Config {
		t.Helper()
		doc.ONNX = yaml.Node{}
		if err := yaml.Unmarshal([]byte(in), &doc); err != nil {
			t.Fatal(err)
		}
		cfg, err := ParseConfigNode(&doc.ONNX)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("ParseConfigNode(%q): %v, want error %q", in, err, wantErr)
		}
		return cfg
	}
	cfg := f("format: onnx\nonnx:\n  device: cuda\n  batching: {max_batch: 64}\n", "")
	if cfg.Device != "cuda" || cfg.Batching.MaxBatch != 64 {
		t.Fatalf("%+v", cfg)
	}
	f("format: onnx\nonnx:\n  devise: cuda\n", "field devise not found")
	if cfg := f("format: onnx\n", ""); cfg.Device != "" || cfg.Batching != nil {
		t.Fatalf("no onnx section: %+v", cfg)
	}
}
