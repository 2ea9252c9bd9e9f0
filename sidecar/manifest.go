package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"gopkg.in/yaml.v3"
)

// Manifest is a model version's model.yaml. Unknown keys are errors.
//
//	format: xgboost          # lightgbm | xgboost | onnx
//	file: model.json         # relative to the version directory
//	features: [f0, f1, f2]   # model input order; omit to use the names in the model file
//	output: transformed      # or raw; a request's "output" overrides it
//
// A feature entry is either a name (a request feature) or a store-backed feature
// {name, group, key, default} whose value a feature store looks up by entity key.
type Manifest struct {
	Format   string        `yaml:"format"`
	File     string        `yaml:"file"`
	Features []FeatureSpec `yaml:"features"`
	Output   string        `yaml:"output"`
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
}

// Stored reports whether the feature comes from a feature store.
func (f FeatureSpec) Stored() bool { return f.Group != "" }

// UnmarshalYAML accepts a plain name or a {name, group, key, default} mapping.
func (f *FeatureSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
			return fmt.Errorf("line %d: feature entry %q: want a name or a {name, group, key, default} mapping", n.Line, n.Value)
		}
		*f = FeatureSpec{Name: n.Value}
		return nil
	case yaml.MappingNode:
		type plain FeatureSpec // no UnmarshalYAML: decode the fields
		var p plain
		// Node.Decode does not inherit KnownFields, so check the keys by hand.
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "name", "group", "key", "default":
			default:
				return fmt.Errorf("line %d: feature entry: unknown key %q (want name, group, key, default)", n.Content[i].Line, k)
			}
		}
		if err := n.Decode(&p); err != nil {
			return err
		}
		*f = FeatureSpec(p)
		if f.Name == "" {
			return fmt.Errorf("line %d: feature entry has no name", n.Line)
		}
		if f.Group == "" || f.Key == "" {
			return fmt.Errorf("line %d: feature %q: a mapping entry is a store-backed feature and needs both group and key", n.Line, f.Name)
		}
		return nil
	}
	return fmt.Errorf("line %d: feature entry: want a name or a {name, group, key, default} mapping", n.Line)
}

// Known formats. A format is only served when a loader is registered for it
// (RegisterFormat); onnx is registered by the ONNX package in builds that include it.
var knownFormats = []string{"lightgbm", "xgboost", "onnx"}

// ParseManifest decodes and validates model.yaml bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("model.yaml is empty (want at least format and file)")
		}
		return nil, fmt.Errorf("model.yaml: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("model.yaml: holds more than one YAML document")
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("model.yaml: %w", err)
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	found := false
	for _, f := range knownFormats {
		found = found || m.Format == f
	}
	if !found {
		return fmt.Errorf("format %q: want one of %s", m.Format, strings.Join(knownFormats, ", "))
	}
	if m.File == "" {
		return errors.New("file: missing (the model file, relative to model.yaml)")
	}
	if strings.Contains(m.File, "/") || strings.Contains(m.File, `\`) || m.File == "." || m.File == ".." {
		return fmt.Errorf("file %q: must name a file in the version directory", m.File)
	}
	switch m.Output {
	case "", "transformed", "raw":
	default:
		return fmt.Errorf("output %q: want transformed or raw", m.Output)
	}
	seen := make(map[string]bool, len(m.Features))
	for _, f := range m.Features {
		if f.Name == "" {
			return errors.New("features: an entry has an empty name")
		}
		if seen[f.Name] {
			return fmt.Errorf("features: %q appears twice", f.Name)
		}
		seen[f.Name] = true
		if f.Default != nil && math.IsInf(*f.Default, 0) {
			return fmt.Errorf("features: %q: default must be finite", f.Name)
		}
	}
	return nil
}
