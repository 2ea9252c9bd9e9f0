package sidecar

import (
	"io/fs"
	"slices"
	"strings"
)

// CheckResult is one entry of Check: a version ("model/version") or, for problems above
// the version level, a model or the repository.
type CheckResult struct {
	Name string
	Err  error
}

// Check loads every version of the repository fsys as the server would, then closes
// them. desc names the repository in messages; store may be nil (models with
// store-backed features then fail with ErrNoFeatureStore); formats adds formats to the
// built-in ones, as Config.Formats does.
func Check(fsys fs.FS, desc string, store FeatureStore, formats map[string]FormatLoader) []CheckResult {
	return CheckLimited(fsys, desc, store, formats, 0)
}

// CheckLimited is Check with the server's model-file limit (Config.MaxModelBytes; 0:
// the default). Pass ModelDirFS(dir) as fsys to read files as the server does.
func CheckLimited(fsys fs.FS, desc string, store FeatureStore, formats map[string]FormatLoader, maxModelBytes int64) []CheckResult {
	r, err := newRegistry(fsys, desc, &Config{Threads: 1, FeatureStore: store, Formats: formats, MaxModelBytes: maxModelBytes}, nil)
	if err != nil {
		return []CheckResult{{Name: desc, Err: err}}
	}
	defer r.Close()
	r.Reload()
	s := r.snap.Load()
	var out []CheckResult
	if s.err != nil {
		out = append(out, CheckResult{Name: desc, Err: s.err})
	}
	for _, name := range s.names {
		m := s.models[name]
		for _, v := range m.versions {
			if f, ok := m.failed[v.version]; !ok || f.err == nil {
				out = append(out, CheckResult{Name: name + "/" + v.version})
			}
		}
		for ver, f := range m.failed {
			n := name + "/" + ver
			if ver == "" {
				n = name
			}
			out = append(out, CheckResult{Name: n, Err: f.err})
		}
	}
	slices.SortStableFunc(out, func(a, b CheckResult) int { return strings.Compare(a.Name, b.Name) })
	return out
}
