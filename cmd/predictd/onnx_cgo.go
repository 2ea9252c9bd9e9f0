//go:build cgo

package main

import (
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/onnxformat"
)

// formats are the model formats beyond the built-in lightgbm and xgboost, for
// sidecar.Config.Formats and sidecar.Check. ONNX Runtime is reached through cgo
// (onnxruntime_go), so `format: onnx` exists only in cgo builds; a CGO_ENABLED=0 binary
// answers such a model with "not supported in this build" and serves the rest
// (onnx_nocgo.go).
func formats() map[string]sidecar.FormatLoader { return onnxformat.Formats() }
