package sidecar

import (
	"fmt"
	"sync"

	"github.com/predictd/predictd/engine"
)

// LoadRequest is what a format loader gets to build one model version.
type LoadRequest struct {
	Model, Version string
	// Manifest is the version's validated model.yaml.
	Manifest *Manifest
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

var (
	formatsMu sync.RWMutex
	formats   = map[string]FormatLoader{
		string(engine.FormatLightGBM): loadTrees(engine.FormatLightGBM),
		string(engine.FormatXGBoost):  loadTrees(engine.FormatXGBoost),
	}
)

// RegisterFormat makes the registry load manifests with "format: name" through l. The
// ONNX package registers "onnx" this way; call it before the first reload. It panics on
// a second registration of the same name, which is a wiring bug.
func RegisterFormat(name string, l FormatLoader) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	if _, dup := formats[name]; dup {
		panic(fmt.Sprintf("BUG: format %q registered twice", name))
	}
	formats[name] = l
}

func formatLoader(name string) (FormatLoader, error) {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	l, ok := formats[name]
	if !ok {
		return nil, fmt.Errorf("format %q is not supported in this build of predictd", name)
	}
	return l, nil
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

// float32Input is implemented by predictors whose arithmetic is float32 (XGBoost tree
// models, most ONNX graphs): the sidecar assembles float32 rows for them, which halves
// the matrix and loses nothing. Predictors without it get float64 rows, which LightGBM
// needs for exact parity.
type float32Input interface{ Semantics() engine.Semantics }

func wantsFloat32(p engine.Predictor) bool {
	if s, ok := p.(float32Input); ok {
		return s.Semantics() == engine.SemanticsXGBoost
	}
	if s, ok := p.(interface{ InputFloat32() bool }); ok {
		return s.InputFloat32()
	}
	return false
}
