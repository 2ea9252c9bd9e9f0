//go:build !(cgo && xgboost)

package engine

import "errors"

// xgbPeerAvailable reports whether this build links XGBoost's predictor (-tags xgboost).
const xgbPeerAvailable = false

// xgbPeer stands in for XGBoost's predictor in builds without -tags xgboost.
type xgbPeer struct{}

func newXGBPeer(string, int, []float32, int) (*xgbPeer, error) {
	return nil, errors.New("XGBoost's predictor is not linked: build with -tags xgboost (needs libxgboost-dev)")
}
func (*xgbPeer) predict(int, []float64) error { return errors.New("not linked") }
func (*xgbPeer) close()                       {}
