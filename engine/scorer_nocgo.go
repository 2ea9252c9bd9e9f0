//go:build !cgo

package engine

import "errors"

// cgoAvailable reports whether the C++ core is linked in.
const cgoAvailable = false

func newCScorer(*Ensemble) (scorer, error) {
	return nil, errors.New("the C++ scoring core needs cgo; this binary was built with CGO_ENABLED=0")
}

func startBackground(int) (string, bool) { return "", false }
