//go:build !race

package tracing

import (
	"context"
	"testing"
)

// TestDisabledAllocs: with tracing off, a request's spans cost no allocation.
func TestDisabledAllocs(t *testing.T) {
	p, err := Setup(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := testing.AllocsPerRun(1000, func() {
		ctx, root := p.Predict(ctx, "m", "1")
		p.Decode(ctx).End()
		p.FeaturesFetch(ctx, SourceRedis).End()
		p.Score(ctx, "go", 10).End()
		p.Encode(ctx).End()
		root.End()
	})
	if a != 0 {
		t.Fatalf("%v allocations per request with tracing disabled", a)
	}
}
