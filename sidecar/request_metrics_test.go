package sidecar

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// families parses a /metrics body.
func families(t testing.TB, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return mf
}

// series finds the series of family name whose labels are exactly labels (name=value
// pairs); nil when there is none.
func series(mf map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := mf[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's value, or -1 when the series is missing.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := series(mf, name, labels...)
	if m == nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// checkHistogram checks that the request-duration series of labels counts n requests,
// in cumulative buckets at latencyBuckets, with a sum between 0 and max.
func checkHistogram(t *testing.T, mf map[string]*dto.MetricFamily, n uint64, max time.Duration, labels ...string) {
	t.Helper()
	if f := mf["predictd_request_duration_seconds"]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("predictd_request_duration_seconds is not a histogram: %v", f)
	}
	m := series(mf, "predictd_request_duration_seconds", labels...)
	if m == nil {
		t.Fatalf("no request duration series %v", labels)
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != n {
		t.Errorf("%v: histogram count %d, want %d", labels, h.GetSampleCount(), n)
	}
	if s := h.GetSampleSum(); !(s > 0 && s <= max.Seconds()) {
		t.Errorf("%v: histogram sum %vs, want in (0, %v]", labels, s, max)
	}
	b := h.GetBucket()
	if len(b) != len(latencyBuckets)+1 || !math.IsInf(b[len(b)-1].GetUpperBound(), 1) || b[len(b)-1].GetCumulativeCount() != n {
		t.Fatalf("%v: buckets %v, want %d and +Inf holding all %d", labels, b, len(latencyBuckets), n)
	}
	b = b[:len(latencyBuckets)]
	prev := uint64(0)
	for i, x := range b {
		if x.GetUpperBound() != latencyBuckets[i] || x.GetCumulativeCount() < prev || x.GetCumulativeCount() > n {
			t.Errorf("%v: bucket %d is le=%v count %d after %d", labels, i, x.GetUpperBound(), x.GetCumulativeCount(), prev)
		}
		prev = x.GetCumulativeCount()
	}
}

// TestRequestMetricsExact: after known requests to two versions, /metrics counts each
// exactly (requests, candidates, the duration histogram, degraded, errors by code), and a retired
// version's series are reported once more, then gone.
func TestRequestMetricsExact(t *testing.T) {
	// BonusMalus from keyStore (assemble_test.go): degraded when the request has no key,
	// 503 feature_store_unavailable for the key "down".
	manifest := lgbManifest + `features: [VehBrand, VehPower, VehGas, Region, Area, VehAge, DrivAge,
  {name: BonusMalus, group: users, key: user_id, default: 100}, Density]
`
	root := newRepo(t,
		repoVersion{model: "claims", version: "1", src: "demo", manifest: manifest},
		repoVersion{model: "claims", version: "2", src: "demo", manifest: manifest})
	ts := startServer(t, Config{ModelDir: root, FeatureStore: keyStore{}})
	ts.met.retain = 0
	key := "abc"
	body := func(ver string, rows int, feature string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, `{"model":"claims","version":%q,"keys":{"user_id":%q},"candidates":[`, ver, key)
		for i := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"id":"c%d","features":{%q:%d}}`, i, feature, 20+i)
		}
		b.WriteString("]}")
		return []byte(b.String())
	}
	start := time.Now()
	want := map[string][2]int{} // version → requests, candidates
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 4 { // concurrent clients, so the race detector sees the atomics
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				ver, rows := "1", 1+(i+g)%3
				if (i+g)%2 == 1 {
					ver = "2"
				}
				if st, out := ts.post(t, "unix", "/v1/predict", "application/json", body(ver, rows, "DrivAge")); st != 200 {
					t.Errorf("predict: %d %s", st, out)
					return
				}
				mu.Lock()
				w := want[ver]
				want[ver] = [2]int{w[0] + 1, w[1] + rows}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for range 3 {
		if st, _ := ts.post(t, "unix", "/v1/predict", "application/json", body("2", 1, "NoSuchFeature")); st != 400 {
			t.Fatalf("unknown feature: %d", st)
		}
	}
	if st, _ := ts.post(t, "unix", "/v1/predict", "application/json", []byte(`{"model":"nope","candidates":[{"id":"a"}]}`)); st != 404 {
		t.Fatalf("unknown model: %d", st)
	}
	key = "down"
	if st, out := ts.post(t, "unix", "/v1/predict", "application/json", body("1", 1, "DrivAge")); st != 503 {
		t.Fatalf("store down: %d %s", st, out)
	}
	key = "" // an empty key is absent: BonusMalus defaulted, the answer degraded
	for range 2 {
		if st, out := ts.post(t, "unix", "/v1/predict", "application/json", body("1", 2, "DrivAge")); st != 200 || !strings.Contains(string(out), `"degraded":true`) {
			t.Fatalf("no key: %d %s", st, out)
		}
	}
	want["1"] = [2]int{want["1"][0] + 2, want["1"][1] + 4}

	_, text := ts.get(t, "/metrics")
	mf := families(t, text)
	for _, ver := range []string{"1", "2"} {
		l := []string{"model", "claims", "version", ver}
		if got := value(mf, "predictd_requests_total", l...); got != float64(want[ver][0]) {
			t.Errorf("version %s: requests_total %v, want %d", ver, got, want[ver][0])
		}
		if got := value(mf, "predictd_candidates_total", l...); got != float64(want[ver][1]) {
			t.Errorf("version %s: candidates_total %v, want %d", ver, got, want[ver][1])
		}
		checkHistogram(t, mf, uint64(want[ver][0]), elapsed, l...)
	}
	if got := value(mf, "predictd_request_errors_total", "code", "unknown_feature", "model", "claims", "version", "2"); got != 3 {
		t.Errorf("unknown_feature errors of version 2: %v, want 3", got)
	}
	if got := value(mf, "predictd_request_errors_total", "code", "unknown_model", "model", "", "version", ""); got != 1 {
		t.Errorf("unknown_model errors: %v, want 1", got)
	}
	if got := value(mf, "predictd_request_errors_total", "code", "feature_store_unavailable", "model", "claims", "version", "1"); got != 1 {
		t.Errorf("feature_store_unavailable errors of version 1: %v, want 1", got)
	}
	if got := value(mf, "predictd_degraded_responses_total", "model", "claims", "version", "1"); got != 2 {
		t.Errorf("degraded responses of version 1: %v, want 2", got)
	}
	if series(mf, "predictd_degraded_responses_total", "model", "claims", "version", "2") != nil || mf["predictd_background_scorings_total"] != nil {
		t.Errorf("series without a count appear: %v %v", mf["predictd_degraded_responses_total"], mf["predictd_background_scorings_total"])
	}

	// Retire version 2: reported once more (retain is 0 here), then forgotten.
	if err := os.RemoveAll(filepath.Join(root, "claims", "2")); err != nil {
		t.Fatal(err)
	}
	if res := ts.Reload(); len(res.Retired) != 1 {
		t.Fatalf("reload retired %v, want version 2", res.Retired)
	}
	v2 := []string{"model", "claims", "version", "2"}
	_, text = ts.get(t, "/metrics")
	mf = families(t, text)
	if got := value(mf, "predictd_requests_total", v2...); got != float64(want["2"][0]) {
		t.Errorf("retired version 2, last report: requests_total %v, want %d", got, want["2"][0])
	}
	_, text = ts.get(t, "/metrics")
	mf = families(t, text)
	for _, name := range []string{"predictd_requests_total", "predictd_candidates_total", "predictd_request_duration_seconds"} {
		if series(mf, name, v2...) != nil {
			t.Errorf("retired version 2 still has %s", name)
		}
	}
	if series(mf, "predictd_request_errors_total", "code", "unknown_feature", "model", "claims", "version", "2") != nil {
		t.Errorf("retired version 2 still has its errors")
	}
	if got := value(mf, "predictd_requests_total", "model", "claims", "version", "1"); got != float64(want["1"][0]) {
		t.Errorf("version 1 after the reload: requests_total %v, want %d", got, want["1"][0])
	}
	if got := value(mf, "predictd_request_errors_total", "code", "unknown_model", "model", "", "version", ""); got != 1 {
		t.Errorf("unknown_model errors after the reload: %v, want 1", got)
	}
}

// scrape renders m's /metrics.
func scrape(t testing.TB, m *metrics) map[string]*dto.MetricFamily {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/metrics")
	m.handler(&ctx)
	return families(t, ctx.Response.Body())
}

// TestSeriesCounts: the buckets, sum, degraded and background counts recordRequest and
// recordBackground keep, as /metrics renders them; a version loaded again keeps its
// counts; scrapes run while requests are recorded.
func TestSeriesCounts(t *testing.T) {
	m, err := newMetrics(disabledTracer)
	if err != nil {
		t.Fatal(err)
	}
	defer m.provider.Shutdown(bg)
	m.retain = time.Hour
	a := m.acquire("m", "1")
	// On a bound, just over it, past the last one.
	for _, d := range []time.Duration{50 * time.Microsecond, 50*time.Microsecond + 1, time.Millisecond, 6 * time.Second} {
		a.recordRequest(2, d, d == time.Millisecond)
	}
	a.recordBackground(1500 * time.Millisecond)
	b := m.acquire("m", "1") // a reload of the same version: the same counts
	m.releaseSeries(a)
	if a != b {
		t.Fatal("a reload of the same version got new counts")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				b.recordRequest(1, 200*time.Microsecond, false)
			}
		}()
	}
	for range 5 {
		scrape(t, m)
	}
	wg.Wait()
	mf := scrape(t, m)
	l := []string{"model", "m", "version", "1"}
	if got := value(mf, "predictd_requests_total", l...); got != 4004 {
		t.Errorf("requests %v, want 4004", got)
	}
	if got := value(mf, "predictd_candidates_total", l...); got != 4008 {
		t.Errorf("candidates %v, want 4008", got)
	}
	if got := value(mf, "predictd_degraded_responses_total", l...); got != 1 {
		t.Errorf("degraded %v, want 1", got)
	}
	if got := value(mf, "predictd_background_scorings_total", l...); got != 1 {
		t.Errorf("background scorings %v, want 1", got)
	}
	if got := value(mf, "predictd_background_cpu_seconds_total", l...); got != 1.5 {
		t.Errorf("background cpu %v, want 1.5", got)
	}
	h := series(mf, "predictd_request_duration_seconds", l...).GetHistogram()
	wantSum := (50e-6 + 50e-6 + 1e-9 + 1e-3 + 6) + 4000*200e-6
	if h.GetSampleCount() != 4004 || h.GetSampleSum() < wantSum-1e-9 || h.GetSampleSum() > wantSum+1e-9 {
		t.Errorf("histogram count %d sum %v, want 4004 and %v", h.GetSampleCount(), h.GetSampleSum(), wantSum)
	}
	cum := map[float64]uint64{}
	for _, x := range h.GetBucket() {
		cum[x.GetUpperBound()] = x.GetCumulativeCount()
	}
	for le, want := range map[float64]uint64{0.00005: 1, 0.0001: 2, 0.00025: 4002, 0.001: 4003, 5: 4003} {
		if cum[le] != want {
			t.Errorf("bucket le=%v: %d, want %d (all %v)", le, cum[le], want, cum)
		}
	}
	m.releaseSeries(b)
	if got := value(scrape(t, m), "predictd_requests_total", l...); got != 4004 {
		t.Errorf("within retain of retiring: requests %v, want 4004", got)
	}
}
