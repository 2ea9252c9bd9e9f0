// Package csrc is predictd's C++ scoring core as the go command builds it: cgo compiles
// every .cc file in this directory (CMakeLists.txt globs the same list) into any binary
// that imports the package. It has no Go API: engine includes predictd.h and calls the
// core through cgo, and imports this package for its object code. A CGO_ENABLED=0 build
// excludes this file, so the package is then empty and engine does not import it.
package csrc

/*
#cgo CXXFLAGS: -std=c++17 -O3
#cgo LDFLAGS: -lstdc++ -lm
*/
import "C"

import _ "embed" // for header

// header is predictd.h, embedded so that this package's compiled form changes whenever
// the header does: the go command rebuilds a package when its own files or its imports'
// compiled forms change, and engine includes predictd.h from here, outside its directory.
// Without it, a header edit that leaves the core's object code as it was (a constant only
// engine uses) would leave engine stale in the build cache.
//
//go:embed predictd.h
var header string
