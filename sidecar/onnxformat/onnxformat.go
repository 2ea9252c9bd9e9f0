// Package onnxformat serves ONNX models in the sidecar: Formats is the "onnx" entry of
// sidecar.Config.Formats (cmd/predictd adds it in builds with cgo). It keeps
// engine/onnx, and ONNX Runtime with it, out of builds and packages that do not want
// it: the sidecar itself never imports engine/onnx.
//
// A version's model.yaml names its features (an ONNX file does not) and may hold an
// onnx: section, decoded into onnx.Config with unknown keys as errors (docs/onnx.md).
package onnxformat

import (
	"context"
	"errors"
	"fmt"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/engine/onnx"
	"github.com/predictd/predictd/sidecar"
	"gopkg.in/yaml.v3"
)

// Formats returns the formats this package serves, for sidecar.Config.Formats and
// sidecar.Check: "onnx", loaded by Load.
func Formats() map[string]sidecar.FormatLoader {
	return map[string]sidecar.FormatLoader{"onnx": Load}
}

// Load is the onnx format's loader: it decodes the manifest's onnx: section and loads
// the model with ONNX Runtime (found through $ORT_LIB or third_party/onnxruntime, see
// onnx.Init).
func Load(req sidecar.LoadRequest) (engine.Predictor, error) {
	var node *yaml.Node
	if req.Manifest.ONNX.Kind != 0 {
		node = &req.Manifest.ONNX
	}
	cfg, err := onnx.ParseConfigNode(node)
	if err != nil {
		return nil, fmt.Errorf("model.yaml onnx: %w", err)
	}
	names := req.Features
	if names == nil { // a caller that did not expand the manifest: its names as written
		for _, f := range req.Manifest.Features {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("format onnx: list the model's input features under features: in model.yaml (an ONNX file does not name them)")
	}
	m, err := onnx.LoadData(req.File, req.Data, cfg, names)
	if err != nil {
		return nil, err
	}
	return Model{m}, nil
}

// Model is an onnx.Model whose errors the sidecar can map to HTTP statuses: a full
// batching queue is sidecar.ErrBusy (503), a value an id input cannot take is
// sidecar.ErrBadInput (400); its Context methods take the sidecar's signature
// (sidecar.ContextPredictor). Every other method, Info included, is the onnx.Model's.
type Model struct{ *onnx.Model }

// PredictF32 scores float32 rows (see onnx.Model.PredictF32).
func (m Model) PredictF32(rows []float32, nrows int, out []float64, raw bool) error {
	return mapErr(m.Model.PredictF32(rows, nrows, out, raw))
}

// PredictF64 scores float64 rows (see onnx.Model.PredictF64).
func (m Model) PredictF64(rows []float64, nrows int, out []float64, raw bool) error {
	return mapErr(m.Model.PredictF64(rows, nrows, out, raw))
}

// PredictF32Context scores float32 rows, a call waiting in the batching queue giving up
// when ctx ends (see onnx.Model.PredictF32Context). The sidecar calls it with the
// request's deadline (sidecar.ContextPredictor).
func (m Model) PredictF32Context(ctx context.Context, rows []float32, nrows int, out []float64, raw bool) error {
	return mapErr(m.Model.PredictF32Context(ctx, rows, nrows, out))
}

// PredictF64Context is PredictF32Context for float64 rows.
func (m Model) PredictF64Context(ctx context.Context, rows []float64, nrows int, out []float64, raw bool) error {
	return mapErr(m.Model.PredictF64Context(ctx, rows, nrows, out))
}

var _ sidecar.ContextPredictor = Model{}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, onnx.ErrQueueFull):
		return fmt.Errorf("%w: %w", sidecar.ErrBusy, err)
	case errors.Is(err, onnx.ErrInvalidInput):
		return fmt.Errorf("%w: %w", sidecar.ErrBadInput, err)
	}
	return err
}
