package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/internal/parsefloat"
)

const scoreUsage = `Usage: predictd score --model PATH --input FILE [flags]

Scores every row of FILE with the model and writes one prediction per line to stdout
(%.9g; a multiclass row is its class values separated by spaces), so the output can be
compared with the training library's own predictions.

Input formats (detected from the first line):
  CSV     comma-separated (tab-separated when the first line has tabs and no commas).
          An empty field is a missing value (NaN); true/false (True/False, as
          pandas writes them) are 1/0; for a model that names its categories
          (LightGBM's pandas_categorical), a feature's label is its code and a
          label the model does not name is missing. The first line is a header when
          any field in it is not a number (nor a label of its column's feature), or
          when it is exactly the model's feature names (which may be numbers). A header that names every one of the
          model's features maps columns by name (other columns are ignored);
          otherwise the columns are the model's features in order.
  LibSVM  "label idx:val idx:val ..." (the label is optional and ignored). An
          absent index is a missing value (NaN), not 0. Indices are column numbers
          as written (zero-based) unless --one-based is given, or no index is 0
          and some index equals the feature count (then they are one-based).

Flags:
  --model PATH      model file (required)
  --format F        lightgbm or xgboost; default: from the file (.json, a leading
                    '{' (JSON or UBJSON) or XGBoost's binary header is XGBoost,
                    anything else LightGBM text)
  --input FILE      rows to score; "-" reads stdin (required)
  --raw             write raw margins instead of transformed predictions
  --threads N       goroutines that split the batch (default 1)
  --backend B       c (the C++ core) or go (the pure-Go scorer); default: c when
                    built with cgo, else go
  --zero-based      LibSVM indices are zero-based (no auto-detection)
  --one-based       LibSVM indices are one-based (no auto-detection)

Exit status: 0 on success, 1 on an error (the message names the line), 2 on bad usage.
`

func runScore(args []string) int {
	return scoreCmd(args, os.Stdin, os.Stdout, os.Stderr)
}

// scoreCmd is runScore with its streams as arguments, for tests.
func scoreCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(fs.Output(), scoreUsage) }
	var (
		modelPath = fs.String("model", "", "model file")
		format    = fs.String("format", "", "lightgbm or xgboost")
		input     = fs.String("input", "", "rows to score")
		raw       = fs.Bool("raw", false, "raw margins")
		threads   = fs.Int("threads", 1, "goroutines")
		backend   = fs.String("backend", "", "c or go")
		zeroBased = fs.Bool("zero-based", false, "LibSVM indices are zero-based")
		oneBased  = fs.Bool("one-based", false, "LibSVM indices are one-based")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "predictd score: %s\n\n", msg)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() != 0:
		return usageErr(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	case *modelPath == "":
		return usageErr("--model is required")
	case *input == "":
		return usageErr("--input is required")
	case *format != "" && *format != string(engine.FormatLightGBM) && *format != string(engine.FormatXGBoost):
		return usageErr(fmt.Sprintf("--format %q: want lightgbm or xgboost", *format))
	case *backend != "" && *backend != string(engine.BackendC) && *backend != string(engine.BackendGo):
		return usageErr(fmt.Sprintf("--backend %q: want c or go", *backend))
	case *threads < 1:
		return usageErr(fmt.Sprintf("--threads %d: want at least 1", *threads))
	case *zeroBased && *oneBased:
		return usageErr("--zero-based and --one-based exclude each other")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "predictd score: %v\n", err)
		return 1
	}

	m, err := engine.LoadFile(*modelPath, engine.Format(*format), engine.Options{
		Backend: engine.Backend(*backend), Threads: *threads,
	})
	if err != nil {
		return fail(err)
	}
	defer m.Close()

	var data []byte
	if *input == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(*input)
	}
	if err != nil {
		return fail(err)
	}
	base := libsvmAuto
	if *zeroBased {
		base = libsvmZero
	} else if *oneBased {
		base = libsvmOne
	}
	rows, nrows, err := readRows(data, m.FeatureNames(), m.Info().CategoryNames, base, stderr)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", *input, err))
	}
	out := make([]float64, nrows*m.NumOutputs(true))
	if err := m.PredictF64(rows, nrows, out, *raw); err != nil {
		return fail(err)
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	width := m.NumOutputs(*raw)
	var buf []byte
	for r := 0; r < nrows; r++ {
		buf = buf[:0]
		for k := 0; k < width; k++ {
			if k > 0 {
				buf = append(buf, ' ')
			}
			buf = strconv.AppendFloat(buf, out[r*width+k], 'g', 9, 64)
		}
		buf = append(buf, '\n')
		if _, err := w.Write(buf); err != nil {
			return fail(err)
		}
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	return 0
}

type libsvmBase int

const (
	libsvmAuto libsvmBase = iota
	libsvmZero
	libsvmOne
)

// readRows parses CSV or LibSVM text into row-major float64 rows of len(names) values.
// labels, when the model names its categories (engine.Info.CategoryNames), turn a CSV
// field that is one of a feature's labels into its code. Notes (such as a header that
// does not name the features) go to notes.
func readRows(data []byte, names []string, labels [][]string, base libsvmBase, notes io.Writer) ([]float64, int, error) {
	lines := splitScoreLines(data)
	first := -1
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) > 0 {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, 0, nil
	}
	if isLibSVM(lines[first]) {
		return readLibSVM(lines, len(names), base)
	}
	return readCSV(data, lines[first], names, labels, notes)
}

func splitScoreLines(data []byte) [][]byte {
	lines := bytes.Split(data, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	for i, l := range lines {
		lines[i] = bytes.TrimSuffix(l, []byte("\r"))
	}
	return lines
}

// isLibSVM: whitespace-separated tokens, each after the optional label of the form
// idx:val.
func isLibSVM(line []byte) bool {
	toks := bytes.Fields(line)
	if len(toks) == 0 || bytes.IndexByte(line, ',') >= 0 {
		return false
	}
	if !bytes.Contains(toks[0], []byte(":")) {
		toks = toks[1:]
	}
	if len(toks) == 0 {
		return false
	}
	for _, t := range toks {
		if bytes.Count(t, []byte(":")) != 1 {
			return false
		}
	}
	return true
}

func readLibSVM(lines [][]byte, nfeat int, base libsvmBase) ([]float64, int, error) {
	type entry struct {
		idx int
		val float64
	}
	parsed := make([][]entry, 0, len(lines))
	lineNo := make([]int, 0, len(lines))
	minIdx, maxIdx := math.MaxInt, -1
	for i, l := range lines {
		toks := bytes.Fields(l)
		if len(toks) == 0 {
			continue
		}
		if !bytes.Contains(toks[0], []byte(":")) {
			toks = toks[1:] // the label
		}
		row := make([]entry, 0, len(toks))
		for _, t := range toks {
			is, vs, ok := bytes.Cut(t, []byte(":"))
			idx, err := strconv.Atoi(string(is))
			if !ok || err != nil || idx < 0 {
				return nil, 0, fmt.Errorf("line %d: %q: want index:value with a non-negative integer index", i+1, scoreClip(string(t)))
			}
			v, err := parseField(string(vs))
			if err != nil {
				return nil, 0, fmt.Errorf("line %d: %q: %v", i+1, scoreClip(string(t)), err)
			}
			minIdx, maxIdx = min(minIdx, idx), max(maxIdx, idx)
			row = append(row, entry{idx, v})
		}
		parsed = append(parsed, row)
		lineNo = append(lineNo, i+1)
	}
	shift := 0
	switch base {
	case libsvmOne:
		shift = 1
	case libsvmAuto:
		if minIdx > 0 && maxIdx == nfeat {
			shift = 1
		}
	}
	rows := make([]float64, len(parsed)*nfeat)
	for i := range rows {
		rows[i] = math.NaN()
	}
	for r, row := range parsed {
		for _, e := range row {
			c := e.idx - shift
			if c < 0 || c >= nfeat {
				return nil, 0, fmt.Errorf("line %d: index %d out of range: the model has %d features (%s indices)",
					lineNo[r], e.idx, nfeat, map[int]string{0: "zero-based", 1: "one-based"}[shift])
			}
			rows[r*nfeat+c] = e.val
		}
	}
	return rows, len(parsed), nil
}

// readCSV reads CSV (or, when the first line has tabs and no comma, tab-separated) text
// with encoding/csv: quotes are honoured where a field starts with one and kept as text
// elsewhere (LazyQuotes). first is the first non-blank line, which picks the separator.
// Blank lines are skipped; line numbers in errors are the file's.
//
// A field that is not a number is a category label when the column's feature has
// labels: its code, or NaN (missing) for a label the model does not name, as LightGBM's
// predict() maps a DataFrame's categories.
func readCSV(data, first []byte, names []string, labels [][]string, notes io.Writer) ([]float64, int, error) {
	nfeat := len(names)
	codes := make([]map[string]float64, nfeat)
	for f, l := range labels {
		if f < nfeat && l != nil {
			codes[f] = engine.CategoryCodes(l)
		}
	}
	cr := csv.NewReader(bytes.NewReader(data))
	if bytes.IndexByte(first, ',') < 0 && bytes.IndexByte(first, '\t') >= 0 {
		cr.Comma = '\t'
	}
	cr.FieldsPerRecord = -1 // checked below, with a message that says what to change
	cr.LazyQuotes = true
	// next returns the next record that is not blank (only whitespace, separators
	// included when they are tabs) and its line number; io.EOF at the end.
	next := func() ([]string, int, error) {
		for {
			rec, err := cr.Read()
			if err != nil {
				return nil, 0, err
			}
			blank := len(rec) == 1 || cr.Comma == '\t'
			for _, f := range rec {
				if strings.TrimSpace(f) != "" {
					blank = false
					break
				}
			}
			if !blank {
				line, _ := cr.FieldPos(0)
				return rec, line, nil
			}
		}
	}

	hdr, firstLine, err := next()
	if err == io.EOF {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, csvErr(err)
	}
	// Column j of the file feeds feature cols[j] (-1: ignored).
	ncols := len(hdr)
	cols := make([]int, ncols)
	for j := range cols {
		cols[j] = j
	}
	// A header has a field that is not a number, or is exactly the model's feature
	// names (which may be numbers: "0,1,2").
	header := len(hdr) == nfeat
	if header {
		for j, h := range hdr {
			if strings.TrimSpace(h) != names[j] {
				header = false
				break
			}
		}
	}
	for j, f := range hdr {
		if _, err := parseField(f); err != nil {
			// A label of the column's feature (columns in order) is data, not a header.
			isLabel := false
			if len(hdr) == nfeat && codes[j] != nil {
				_, isLabel = codes[j][strings.TrimSpace(f)]
			}
			if !isLabel {
				header = true
			}
		}
	}
	rows := make([]float64, 0, bytes.Count(data, []byte{'\n'})*nfeat)
	nrows := 0
	row := make([]float64, nfeat)
	addRow := func(fields []string, line int) error {
		if len(fields) != ncols {
			return fmt.Errorf("line %d: %d fields, want %d", line, len(fields), ncols)
		}
		for f := range row {
			row[f] = math.NaN()
		}
		for j, fv := range fields {
			if cols[j] < 0 {
				continue
			}
			v, err := parseField(fv)
			if err != nil {
				c := codes[cols[j]]
				if c == nil {
					return fmt.Errorf("line %d, column %d: %v", line, j+1, err)
				}
				var ok bool
				if v, ok = c[strings.TrimSpace(fv)]; !ok {
					v = math.NaN() // a category the model does not name
				}
			}
			row[cols[j]] = v
		}
		rows = append(rows, row...)
		nrows++
		return nil
	}
	if header {
		byName := make(map[string]int, len(hdr))
		for j, h := range hdr {
			byName[strings.TrimSpace(h)] = j
		}
		var missing []string
		for _, n := range names {
			if _, ok := byName[n]; !ok {
				missing = append(missing, n)
			}
		}
		switch {
		case len(missing) == 0:
			for j := range cols {
				cols[j] = -1
			}
			for f, n := range names {
				cols[byName[n]] = f
			}
		case ncols == nfeat:
			fmt.Fprintf(notes, "predictd score: line %d: the header does not name the model's features (no %q); using the columns in order\n", firstLine, missing[0])
		default:
			return nil, 0, fmt.Errorf("line %d: the header has %d columns and lacks the model's features %s; want the model's %d feature names or exactly %d columns",
				firstLine, ncols, quoteNames(missing, 5), nfeat, nfeat)
		}
	} else if ncols != nfeat {
		return nil, 0, fmt.Errorf("line %d: %d fields, but the model takes %d features", firstLine, ncols, nfeat)
	} else if err := addRow(hdr, firstLine); err != nil {
		return nil, 0, err
	}
	for {
		fields, line, err := next()
		if err == io.EOF {
			return rows, nrows, nil
		}
		if err != nil {
			return nil, 0, csvErr(err)
		}
		if err := addRow(fields, line); err != nil {
			return nil, 0, err
		}
	}
}

// csvErr words an encoding/csv error like the reader's own ("line N: ...").
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	return err
}

// parseField parses one field as float64; an empty field is NaN (missing), a boolean
// (true or false, as pandas writes them: True, False) 1 or 0.
func parseField(s string) (float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return math.NaN(), nil
	case "true", "True", "TRUE":
		return 1, nil
	case "false", "False", "FALSE":
		return 0, nil
	}
	v, err := parsefloat.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return v, nil // ±Inf or a denormal/zero: as close as float64 gets
		}
		return 0, fmt.Errorf("%q is not a number", scoreClip(s))
	}
	return v, nil
}

func quoteNames(s []string, n int) string {
	q := make([]string, 0, n+1)
	for i, v := range s {
		if i == n {
			q = append(q, fmt.Sprintf("and %d more", len(s)-n))
			break
		}
		q = append(q, strconv.Quote(v))
	}
	return strings.Join(q, ", ")
}

func scoreClip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
