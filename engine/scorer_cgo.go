//go:build cgo

package engine

import "errors"

// TEMPORARY until the cgo bridge lands: the C++ core is not linked yet.
const cgoAvailable = false

func newCScorer(*Ensemble) (scorer, error) {
	return nil, errors.New("C++ core not built yet")
}
