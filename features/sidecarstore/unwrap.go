package sidecarstore

import (
	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/sidecar"
)

// Unwrap returns the features.Store behind a FeatureStore made by New or NewReloading
// (the sidecar's portal browses its groups, cache and entities); false for any other.
func Unwrap(fs sidecar.FeatureStore) (*features.Store, bool) {
	s, ok := fs.(*featureStore)
	if !ok || s == nil {
		return nil, false
	}
	return s.st, true
}
