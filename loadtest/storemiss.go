package loadtest

// Feature-store misses, read from the sidecar's /metrics at window boundaries, for the
// CPU model (cpumodel.go): a miss costs a backend read besides the scoring.

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"time"
)

// storeMissMetric is the Prometheus name of the sidecar's feature-store cache-miss
// counter (predictd.features.cache.misses), summed over its labels (groups).
const storeMissMetric = "predictd_features_cache_misses"

// ParseStoreMisses sums the store-miss counter's samples in a Prometheus text
// exposition; ok is false when it has none (no store, or no miss yet).
func ParseStoreMisses(text []byte) (total float64, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, storeMissMetric) {
			continue
		}
		rest := line[len(storeMissMetric):]
		// The counter itself (with _total), not another metric sharing the prefix.
		rest = strings.TrimPrefix(rest, "_total")
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || !(v >= 0) || v > 1e18 {
			continue
		}
		total += v
		ok = true
	}
	return total, ok
}

// storeMisses reads the store-miss total of the sidecar at t; ok is false when /metrics
// did not answer in time.
func storeMisses(t *Target) (float64, bool) {
	st, body, err := t.get("/metrics", 500*time.Millisecond)
	if err != nil || st != 200 {
		return 0, false
	}
	v, _ := ParseStoreMisses(body)
	return v, true
}
