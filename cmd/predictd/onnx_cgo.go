//go:build cgo

package main

// ONNX Runtime is reached through cgo (onnxruntime_go), so `format: onnx` exists only in
// cgo builds; a CGO_ENABLED=0 binary answers such a model with "not supported in this
// build" and serves the rest.
import _ "github.com/predictd/predictd/sidecar/onnxformat" // registers format: onnx
