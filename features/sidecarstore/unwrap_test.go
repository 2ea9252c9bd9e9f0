package sidecarstore

import (
	"testing"

	"github.com/predictd/predictd/features"
)

func TestUnwrap(t *testing.T) {
	st, err := features.Open(features.Config{Groups: map[string]*features.Group{}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, ok := Unwrap(New(st, "snapshot")); !ok || got != st {
		t.Errorf("Unwrap(New(st)) = %p, %v; want %p", got, ok, st)
	}
	if got, ok := Unwrap(NewReloading(st, "snapshot", t.TempDir())); !ok || got != st {
		t.Errorf("Unwrap(NewReloading(st)) = %p, %v", got, ok)
	}
	if _, ok := Unwrap(nil); ok {
		t.Error("Unwrap(nil) reports a store")
	}
}
