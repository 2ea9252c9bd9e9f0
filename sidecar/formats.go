package sidecar

import (
	"fmt"
	"slices"
	"strings"

	"github.com/predictd/predictd/engine"
)

// LoadRequest is what a format loader gets to build one model version.
type LoadRequest struct {
	Model, Version string
	// Manifest is the version's validated model.yaml.
	Manifest *Manifest
	// Features names the model's input columns in order: the manifest's features with
	// each store-backed vector expanded to NAME[0]..NAME[w-1]; nil when the manifest
	// lists none (the model file names them).
	Features []string
	// File is the model file's path inside the model repository (for messages), and Data
	// its contents; Data is only valid during the call.
	File string
	Data []byte
	// Threads is the number of goroutines a large batch may use (Config.Threads).
	Threads int
}

// FormatLoader builds a Predictor from a model file. It runs in the background reload
// goroutine, never on the request path, and may be slow.
type FormatLoader func(req LoadRequest) (engine.Predictor, error)

// builtinFormats are the formats every build serves; Config.Formats adds others.
func builtinFormats() map[string]FormatLoader {
	return map[string]FormatLoader{
		string(engine.FormatLightGBM): loadTrees(engine.FormatLightGBM),
		string(engine.FormatXGBoost):  loadTrees(engine.FormatXGBoost),
	}
}

// formatTable merges extra (Config.Formats) into the built-in formats. A name given
// twice, or a nil loader, is a wiring error.
func formatTable(extra map[string]FormatLoader) (map[string]FormatLoader, error) {
	t := builtinFormats()
	for name, l := range extra {
		if _, dup := t[name]; dup {
			return nil, fmt.Errorf("format %q is built in; Config.Formats cannot replace it", name)
		}
		if l == nil || name == "" {
			return nil, fmt.Errorf("format %q: Config.Formats needs a name and a loader", name)
		}
		t[name] = l
	}
	return t, nil
}

// formatNames lists a table's formats and the known ones it lacks, for messages.
func formatNames(t map[string]FormatLoader) string {
	names := slices.Clone(knownFormats)
	for n := range t {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

func loadTrees(f engine.Format) FormatLoader {
	return func(req LoadRequest) (engine.Predictor, error) {
		ens, err := engine.Parse(f, req.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", req.File, err)
		}
		return engine.NewModel(ens, engine.Options{Threads: req.Threads})
	}
}
