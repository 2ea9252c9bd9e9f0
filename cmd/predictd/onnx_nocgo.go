//go:build !cgo

package main

import "github.com/predictd/predictd/sidecar"

// formats is empty without cgo: ONNX Runtime needs it (onnx_cgo.go).
func formats() map[string]sidecar.FormatLoader { return nil }
