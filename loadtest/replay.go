package loadtest

// Replayed traffic (docs/loadtest.md, "Replaying traffic"): request bodies from a file, or
// requests rebuilt from the sidecar's prediction logs, optionally with their recorded
// arrival pattern rescaled to each step's rate.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Replay makes a workload send recorded requests instead of generated ones.
type Replay struct {
	// Bodies is a file of JSON lines, one POST /v1/predict body in the wire's JSON form
	// per line, sent as they are (protocol json).
	Bodies string `yaml:"bodies"`
	// PredLog is a prediction log file (PREFIX-...jsonl.zst) or a directory of them, as
	// the sidecar writes them (--predlog); files still being written (.part) are skipped.
	// Each logged request is rebuilt from its rows: dense rows in the model's order, or
	// with Named, candidates carrying the logged ids and the header's feature names.
	PredLog string `yaml:"predlog"`
	Named   bool   `yaml:"named"`
	// Timing "schedule" (default) sends at the scenario's arrival process; "recorded"
	// (prediction logs only) keeps the log's gaps between requests, scaled so their mean
	// rate is the step's rate (set the rate to the log's own, which the run's notes state,
	// to replay them as they came).
	Timing string `yaml:"timing"`
	// Limit is the most requests read (default 1,000); they are cycled.
	Limit int `yaml:"limit"`
}

// maxReplayLine bounds one line of a bodies file or prediction log.
const maxReplayLine = 64 << 20

func (rp *Replay) normalize(protocol string) error {
	if (rp.Bodies == "") == (rp.PredLog == "") {
		return errors.New("replay: set bodies or predlog (one of them)")
	}
	switch rp.Timing {
	case "":
		rp.Timing = "schedule"
	case "schedule":
	case "recorded":
		if rp.PredLog == "" {
			return errors.New("replay.timing recorded: only prediction logs carry times")
		}
	default:
		return fmt.Errorf("replay.timing %q: want schedule or recorded", rp.Timing)
	}
	if rp.Bodies != "" && protocol != "json" {
		return errors.New("replay.bodies are sent as they are: set protocol: json")
	}
	if rp.Bodies != "" && rp.Named {
		return errors.New("replay.named applies to prediction logs")
	}
	if rp.Limit == 0 {
		rp.Limit = 1000
	}
	if rp.Limit < 1 || rp.Limit > 1_000_000 {
		return fmt.Errorf("replay.limit %d: want 1..1000000", rp.Limit)
	}
	return nil
}

// ReadBodies reads a bodies file: JSON lines, each a predict request in the wire's JSON
// form. Blank lines are skipped; at most limit bodies are read. Each body's candidates
// (or rows) are counted for predictions/s.
func ReadBodies(r io.Reader, limit int) ([]Body, error) {
	var out []Body
	err := eachLine(r, func() bool { return len(out) < limit }, func(line int, b []byte) error {
		var req struct {
			Model      string            `json:"model"`
			Candidates []json.RawMessage `json:"candidates"`
			Rows       []json.RawMessage `json:"rows"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return fmt.Errorf("line %d: %v", line, err)
		}
		if req.Model == "" {
			return fmt.Errorf("line %d: no model", line)
		}
		n := len(req.Candidates) + len(req.Rows)
		if n == 0 {
			return fmt.Errorf("line %d: no candidates or rows", line)
		}
		out = append(out, Body{Data: append([]byte(nil), b...), Candidates: n})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no request bodies")
	}
	return out, nil
}

// eachLine calls fn with each non-blank line of r (trimmed; valid until fn returns) and its
// number, while more() holds; an error from fn or from reading ends it.
func eachLine(r io.Reader, more func() bool, fn func(line int, b []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxReplayLine)
	line := 0
	for more() && sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if err := fn(line, b); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %v", line+1, err)
	}
	return nil
}

// LoggedRequest is one request rebuilt from a prediction log.
type LoggedRequest struct {
	At       time.Time
	Model    string
	Version  string
	Features []string    // the header's names, in model order
	IDs      []string    // candidate ids, when logged
	Rows     [][]float64 // one per candidate; NaN is a missing value
}

// ReadPredLog reads prediction-log JSON lines (one file, decompressed): headers name the
// model's features, records hold rows. Records of shadow models (shadow_of) are skipped:
// they are a copy of a request already logged. At most limit requests are read.
func ReadPredLog(r io.Reader, limit int) ([]LoggedRequest, error) {
	var out []LoggedRequest
	var features []string
	err := eachLine(r, func() bool { return len(out) < limit }, func(line int, b []byte) error {
		var rec struct {
			Header *struct {
				Model    string   `json:"model"`
				Version  string   `json:"version"`
				Features []string `json:"features"`
			} `json:"header"`
			TS       time.Time           `json:"ts"`
			Model    string              `json:"model"`
			Version  string              `json:"version"`
			IDs      []string            `json:"ids"`
			Features [][]json.RawMessage `json:"features"`
			ShadowOf string              `json:"shadow_of"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("line %d: %v", line, err)
		}
		if rec.Header != nil {
			features = rec.Header.Features
			return nil
		}
		if rec.ShadowOf != "" {
			return nil
		}
		if features == nil {
			return fmt.Errorf("line %d: a record before any header", line)
		}
		if rec.Model == "" || len(rec.Features) == 0 {
			return fmt.Errorf("line %d: a record without model or rows", line)
		}
		if len(rec.IDs) != 0 && len(rec.IDs) != len(rec.Features) {
			return fmt.Errorf("line %d: %d ids for %d rows", line, len(rec.IDs), len(rec.Features))
		}
		lr := LoggedRequest{At: rec.TS, Model: rec.Model, Version: rec.Version, Features: features, IDs: rec.IDs}
		for i, row := range rec.Features {
			if len(row) != len(features) {
				return fmt.Errorf("line %d: row %d has %d values for %d features", line, i, len(row), len(features))
			}
			vals := make([]float64, len(row))
			for j, raw := range row {
				v, err := logValue(raw)
				if err != nil {
					return fmt.Errorf("line %d: row %d, feature %s: %v", line, i, features[j], err)
				}
				vals[j] = v
			}
			lr.Rows = append(lr.Rows, vals)
		}
		out = append(out, lr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// logValue reads one logged value: a number, null (missing: NaN), "+Inf" or "-Inf".
func logValue(raw json.RawMessage) (float64, error) {
	switch s := string(raw); s {
	case "null":
		return math.NaN(), nil
	case `"+Inf"`:
		return math.Inf(1), nil
	case `"-Inf"`:
		return math.Inf(-1), nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("want a number, null, \"+Inf\" or \"-Inf\", got %.40s", raw)
	}
	return v, nil
}

// predLogFiles lists the finished log files at path: the file itself, or the directory's
// *.jsonl.zst files in name order (which is time order).
func predLogFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".jsonl.zst") {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no finished prediction logs (*.jsonl.zst)", path)
	}
	return out, nil
}

// LoadPredLog reads up to limit requests from the prediction logs at path, in time order.
func LoadPredLog(path string, limit int) ([]LoggedRequest, error) {
	files, err := predLogFiles(path)
	if err != nil {
		return nil, err
	}
	var out []LoggedRequest
	for _, f := range files {
		if len(out) >= limit {
			break
		}
		reqs, err := readPredLogFile(f, limit-len(out))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, reqs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no logged requests", path)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

func readPredLogFile(path string, limit int) ([]LoggedRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return ReadPredLog(zr, limit)
}

// replayBodies builds the bodies (and, for recorded timing, the gaps after each one in
// seconds) of a replaying workload.
func replayBodies(w *Workload, protocol string) (bodies []Body, gaps []float64, note string, err error) {
	rp := w.Replay
	if rp.Bodies != "" {
		f, err := os.Open(rp.Bodies)
		if err != nil {
			return nil, nil, "", err
		}
		defer f.Close()
		bodies, err = ReadBodies(f, rp.Limit)
		if err != nil {
			return nil, nil, "", fmt.Errorf("replay.bodies %s: %w", rp.Bodies, err)
		}
		return bodies, nil, fmt.Sprintf("workload %s replays %d request bodies from %s", w.Name, len(bodies), rp.Bodies), nil
	}
	reqs, err := LoadPredLog(rp.PredLog, rp.Limit)
	if err != nil {
		return nil, nil, "", fmt.Errorf("replay.predlog: %w", err)
	}
	for _, lr := range reqs {
		p := requestParts{model: lr.Model, version: w.Version, output: w.Output, dense: !rp.Named, featNames: lr.Features, vals: lr.Rows}
		if w.Model != "auto" {
			p.model = w.Model
		}
		p.ids = lr.IDs
		if len(p.ids) == 0 {
			for c := range lr.Rows {
				p.ids = append(p.ids, fmt.Sprintf("c%d", c))
			}
		}
		p.keys = make([][][2]string, len(lr.Rows))
		var data []byte
		if protocol == "json" {
			data = appendJSONRequest(nil, &p)
		} else {
			data = appendProtoRequest(nil, &p)
		}
		bodies = append(bodies, Body{Data: data, Candidates: len(lr.Rows)})
	}
	span := reqs[len(reqs)-1].At.Sub(reqs[0].At).Seconds()
	note = fmt.Sprintf("workload %s replays %d logged requests from %s", w.Name, len(reqs), rp.PredLog)
	if len(reqs) > 1 && span > 0 {
		note += fmt.Sprintf(", logged over %.1f s (%.2f requests/s)", span, float64(len(reqs)-1)/span)
	}
	if rp.Timing == "recorded" {
		if !(len(reqs) > 1 && span > 0) {
			return nil, nil, "", errors.New("replay.timing recorded: the log needs two requests at different times")
		}
		gaps = make([]float64, len(reqs))
		for i := range reqs {
			if i+1 < len(reqs) {
				gaps[i] = reqs[i+1].At.Sub(reqs[i].At).Seconds()
			} else {
				gaps[i] = span / float64(len(reqs)-1) // the wrap back to the first: a mean gap
			}
		}
		note += ", sent with their recorded gaps scaled to each step's rate"
	}
	return bodies, gaps, note, nil
}
