package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Manifest is a model version's model.yaml. Unknown keys are errors.
//
//	format: xgboost          # lightgbm | xgboost | onnx
//	file: model.json         # relative to the version directory
//	features: [f0, f1, f2]   # model input order; omit to use the names in the model file
//	output: transformed      # or raw; a request's "output" overrides it
//	weight: 3                # share of --admission-capacity; default 1
//	shadows:                 # models mirrored with this one's requests (docs/production.md)
//	  - {model: ctr-next, version: "4", rate: 0.5, top_k: 10}
//	shadow: {cpu_share: 0.2} # CPU cores for this model's shadows at normal priority
//	log: {rate: 0.01}        # sampled prediction log, with --prediction-log-dir
//	onnx: {...}              # format onnx only: the ONNX session settings (docs/onnx.md)
//
// A feature entry is either a name (a request feature) or a store-backed feature
// {name, group, key, default} whose value a feature store looks up by entity key.
type Manifest struct {
	Format   string        `yaml:"format"`
	File     string        `yaml:"file"`
	Features []FeatureSpec `yaml:"features"`
	Output   string        `yaml:"output"`
	// Weight is the model's share of the admission capacity relative to other models;
	// absent (0 here) means 1, and a weight of 0 written out is refused. The serving
	// version's weight applies to the model.
	Weight  float64      `yaml:"weight"`
	Shadows []ShadowSpec `yaml:"shadows"`
	// Shadow holds settings for all of Shadows; the serving version's apply to the model.
	Shadow *ShadowSettings `yaml:"shadow"`
	Log    *LogSpec        `yaml:"log"`
	// ONNX holds the "onnx:" section unparsed; the onnx format's loader decodes it (with
	// unknown keys as errors). Other formats reject it.
	ONNX yaml.Node `yaml:"onnx"`
}

// ShadowSpec names a shadow model of this version: every sampled request to this
// version is also scored by the shadow, off the latency path, and only the agreement is
// reported.
type ShadowSpec struct {
	// Model is the shadow model's name in the repository.
	Model string `yaml:"model"`
	// Version pins the shadow's version; empty: its serving version.
	Version string `yaml:"version"`
	// Rate is the fraction of requests mirrored, in (0, 1]; 0 means 1.
	Rate float64 `yaml:"rate"`
	// TopK is k for the rank statistics; 0 means 10.
	TopK int `yaml:"top_k"`
}

// ShadowSettings are the settings shared by a model's shadows.
type ShadowSettings struct {
	// CPUShare is the CPU time, in cores, within which the model's shadows are scored at
	// normal priority (a budget of their own, in place of --shadow-cpu-share's shared
	// one); beyond it they score at idle priority. 0: the process-wide share.
	CPUShare float64 `yaml:"cpu_share"`
}

// LogSpec turns on the model's prediction log (sidecar/predlog). Zero fields take
// predlog's defaults.
type LogSpec struct {
	// Rate is the fraction of requests logged, in (0, 1]; 0 means 1.
	Rate float64 `yaml:"rate"`
	// MaxFileBytes rotates a file at this compressed size; default 256 MiB.
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxFileAge rotates a file this long after it was opened (e.g. "1h"); default 1h.
	MaxFileAge time.Duration `yaml:"max_file_age"`
	// QueueSize is how many records may wait for the writer; default 1024.
	QueueSize int `yaml:"queue_size"`
}

// FeatureSpec is one entry of a manifest's features list.
type FeatureSpec struct {
	// Name is the feature name requests use; unique within a model.
	Name string `yaml:"name"`
	// Group, Key and Default are set for store-backed features only: the feature-store
	// group that holds the value, the entity key that selects the row (a request key name
	// such as "user_id"), and the value used when the store has none (nil: missing/NaN).
	Group   string   `yaml:"group"`
	Key     string   `yaml:"key"`
	Default *float64 `yaml:"default"`
	// Categories, for a request feature, are the labels of its category codes (code i is
	// Categories[i]), as the DataFrame the model was trained on had them: a request may
	// then send a label where the code goes. For models whose file does not name its
	// categories (XGBoost, ONNX), or to name them anew; it replaces the names a LightGBM
	// file holds for that feature.
	Categories []string `yaml:"categories"`
}

// Stored reports whether the feature comes from a feature store.
func (f FeatureSpec) Stored() bool { return f.Group != "" }

// UnmarshalYAML accepts a plain name or a {name, group, key, default} mapping.
func (f *FeatureSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
			return fmt.Errorf("line %d: feature entry %s: want a name or a {name, group, key, default} mapping", n.Line, shown(n.Value))
		}
		*f = FeatureSpec{Name: n.Value}
		return nil
	case yaml.MappingNode:
		type plain FeatureSpec // no UnmarshalYAML: decode the fields
		var p plain
		// Node.Decode does not inherit KnownFields, so check the keys by hand.
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "name", "group", "key", "default", "categories":
			default:
				return fmt.Errorf("line %d: feature entry: unknown key %s (want name, group, key, default, categories)", n.Content[i].Line, shown(k))
			}
		}
		if err := n.Decode(&p); err != nil {
			return err
		}
		*f = FeatureSpec(p)
		if f.Name == "" {
			return fmt.Errorf("line %d: feature entry has no name", n.Line)
		}
		if f.Categories != nil {
			if f.Group != "" || f.Key != "" || f.Default != nil {
				return fmt.Errorf("line %d: feature %s: categories are for a request feature, not with group, key or default", n.Line, shown(f.Name))
			}
			if len(f.Categories) == 0 {
				return fmt.Errorf("line %d: feature %s: categories is empty", n.Line, shown(f.Name))
			}
			// A label twice would map to two codes, and requests get the first.
			seen := make(map[string]int, len(f.Categories))
			for i, c := range f.Categories {
				if j, dup := seen[c]; dup {
					return fmt.Errorf("line %d: feature %s: categories %d and %d are the same label %s", n.Line, shown(f.Name), j, i, shown(c))
				}
				seen[c] = i
			}
			return nil
		}
		if f.Group == "" || f.Key == "" {
			return fmt.Errorf("line %d: feature %s: a mapping entry is a store-backed feature and needs both group and key (or a request feature with categories)", n.Line, shown(f.Name))
		}
		return nil
	}
	return fmt.Errorf("line %d: feature entry: want a name, a {name, group, key, default} mapping or a {name, categories} mapping", n.Line)
}

// maxCPUShare bounds a CPU share: more cores than any host has is a typo.
const maxCPUShare = 1024

// yamlValueRE matches the values yaml.v3 quotes in its errors (`...`): they are the
// file's contents, and error text (GET /v1/models, logs) must not carry them: a
// model.yaml that is a link to another file must not publish its lines.
var yamlValueRE = regexp.MustCompile("`[^`]*`")

// yamlFieldRE matches yaml.v3's error for an unknown key, which names the key as it is.
var yamlFieldRE = regexp.MustCompile(`field ((?s).*?) not found in type sidecar\.\w+`)

// checkManifestNodes checks what decoding model.yaml into a Manifest cannot tell: a
// null entry under features (yaml.v3 drops it from the list, and the count of features
// then no longer matches the model's, which is not what is wrong), and weight: 0 (the
// absent weight, 0 in the struct, means 1; written out, 0 is a mistake).
func checkManifestNodes(data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil // Decode has said what is wrong, or will
	}
	doc := root.Content[0]
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch k.Value {
		case "features":
			for j, e := range v.Content {
				if v.Kind == yaml.SequenceNode && (e.Tag == "!!null" || e.Kind == yaml.AliasNode && e.Alias != nil && e.Alias.Tag == "!!null") {
					return fmt.Errorf("line %d: features[%d] is empty (want a name or a mapping)", e.Line, j)
				}
			}
		case "weight":
			if w := 1.0; v.Kind == yaml.ScalarNode && v.Decode(&w) == nil && w == 0 {
				return fmt.Errorf("line %d: weight 0: want a positive number (the model's share of --admission-capacity; leave weight out for 1)", v.Line)
			}
		}
	}
	return nil
}

// Known formats. A format is only served when the server has a loader for it
// (Config.Formats); cmd/predictd adds onnx in builds that include ONNX Runtime.
var knownFormats = []string{"lightgbm", "xgboost", "onnx"}

// ParseManifest decodes and validates model.yaml bytes; format must be one of the known
// formats (lightgbm, xgboost, onnx).
func ParseManifest(data []byte) (*Manifest, error) { return parseManifest(data, nil) }

// parseManifest is ParseManifest that also accepts the formats of a server's table.
func parseManifest(data []byte, formats map[string]FormatLoader) (*Manifest, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("model.yaml is empty (want at least format and file)")
		}
		msg := yamlValueRE.ReplaceAllString(err.Error(), "(a value, not shown)")
		msg = yamlFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
			return "unknown key " + shown(yamlFieldRE.FindStringSubmatch(m)[1]) + " (not a model.yaml key)"
		})
		return nil, fmt.Errorf("model.yaml: %s", msg)
	}
	if err := checkManifestNodes(data); err != nil {
		return nil, fmt.Errorf("model.yaml: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("model.yaml: holds more than one YAML document")
	}
	if err := m.validate(formats); err != nil {
		return nil, fmt.Errorf("model.yaml: %w", err)
	}
	return &m, nil
}

func (m *Manifest) validate(formats map[string]FormatLoader) error {
	_, found := formats[m.Format] // a format the server was given (Config.Formats)
	if !found && !slices.Contains(knownFormats, m.Format) {
		return fmt.Errorf("format %s: want one of %s", shown(m.Format), formatNames(formats))
	}
	if m.File == "" {
		return errors.New("file: missing (the model file, relative to model.yaml)")
	}
	if strings.Contains(m.File, "/") || strings.Contains(m.File, `\`) || m.File == "." || m.File == ".." {
		return fmt.Errorf("file %s: must name a file in the version directory", shown(m.File))
	}
	switch m.Output {
	case "", "transformed", "raw":
	default:
		return fmt.Errorf("output %s: want transformed or raw", shown(m.Output))
	}
	if m.ONNX.Kind != 0 && m.Format != "onnx" {
		return fmt.Errorf("onnx: only format onnx takes this section (format is %s)", shown(m.Format))
	}
	if !(m.Weight >= 0 && !math.IsInf(m.Weight, 0)) {
		return fmt.Errorf("weight %v: want a positive number (the model's share of --admission-capacity)", m.Weight)
	}
	for i, sh := range m.Shadows {
		if sh.Model == "" {
			return fmt.Errorf("shadows[%d]: model missing (the shadow model's name)", i)
		}
		if !(sh.Rate >= 0 && sh.Rate <= 1) {
			return fmt.Errorf("shadows[%d] (%s): rate %v: want a fraction in (0, 1]", i, sh.Model, sh.Rate)
		}
		if sh.TopK < 0 {
			return fmt.Errorf("shadows[%d] (%s): top_k %d: want a positive number", i, sh.Model, sh.TopK)
		}
	}
	if sh := m.Shadow; sh != nil && !(sh.CPUShare >= 0 && sh.CPUShare <= maxCPUShare) {
		return fmt.Errorf("shadow: cpu_share %v: want a number of cores in (0, %d] (0 or none: --shadow-cpu-share)", sh.CPUShare, maxCPUShare)
	}
	if l := m.Log; l != nil {
		if !(l.Rate >= 0 && l.Rate <= 1) {
			return fmt.Errorf("log: rate %v: want a fraction in (0, 1]", l.Rate)
		}
		if l.MaxFileBytes < 0 || l.MaxFileAge < 0 || l.QueueSize < 0 {
			return errors.New("log: max_file_bytes, max_file_age and queue_size must not be negative")
		}
	}
	seen := make(map[string]bool, len(m.Features))
	for _, f := range m.Features {
		if f.Name == "" {
			return errors.New("features: an entry has an empty name")
		}
		if seen[f.Name] {
			return fmt.Errorf("features: %s appears twice", shown(f.Name))
		}
		seen[f.Name] = true
		if f.Default != nil && math.IsInf(*f.Default, 0) {
			return fmt.Errorf("features: %s: default must be finite", shown(f.Name))
		}
	}
	return nil
}
