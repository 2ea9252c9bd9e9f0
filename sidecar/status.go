package sidecar

import (
	"slices"
	"time"
)

// ModelStatus is one model in GET /v1/models.
type ModelStatus struct {
	Name string `json:"name"`
	// Serving is the version requests without "version" get; empty when none loaded.
	Serving  string          `json:"serving"`
	Versions []VersionStatus `json:"versions"`
}

// VersionStatus is one version of a model: loaded (State "serving" or "loaded"), or
// "failed" with the error. A failed version whose older copy still serves appears twice:
// once loaded, once failed.
type VersionStatus struct {
	Version     string     `json:"version"`
	State       string     `json:"state"`
	Format      string     `json:"format,omitempty"`
	Output      string     `json:"output,omitempty"`
	NumFeatures int        `json:"num_features,omitempty"`
	NumOutputs  int        `json:"num_outputs,omitempty"`
	Features    []string   `json:"features,omitempty"`
	LoadedAt    *time.Time `json:"loaded_at,omitempty"`
	LoadSeconds float64    `json:"load_seconds,omitempty"`
	Error       string     `json:"error,omitempty"`
	FailedAt    *time.Time `json:"failed_at,omitempty"`
}

// ModelsStatus is GET /v1/models.
type ModelsStatus struct {
	Models     []ModelStatus `json:"models"`
	ReloadedAt time.Time     `json:"reloaded_at"`
	Error      string        `json:"error,omitempty"`
}

// Models reports every model and version of the current snapshot.
func (r *Registry) Models() ModelsStatus {
	s := r.snap.Load()
	st := ModelsStatus{Models: []ModelStatus{}, ReloadedAt: s.at}
	if s.err != nil {
		st.Error = s.err.Error()
	}
	for _, name := range s.names {
		st.Models = append(st.Models, s.models[name].status())
	}
	return st
}

// Model reports one model.
func (r *Registry) Model(name string) (ModelStatus, bool) {
	m := r.snap.Load().models[name]
	if m == nil {
		return ModelStatus{}, false
	}
	return m.status(), true
}

func (m *modelSet) status() ModelStatus {
	st := ModelStatus{Name: m.name, Versions: []VersionStatus{}}
	latest := m.latest()
	if latest != nil {
		st.Serving = latest.version
	}
	for _, v := range m.versions {
		state := "loaded"
		if v == latest {
			state = "serving"
		}
		at := v.loadedAt
		output := "transformed"
		if v.raw {
			output = "raw"
		}
		st.Versions = append(st.Versions, VersionStatus{Version: v.version, State: state,
			Format: v.manifest.Format, Output: output, NumFeatures: v.nfeat,
			NumOutputs: v.pred.NumOutputs(v.raw), Features: v.names, LoadedAt: &at,
			LoadSeconds: v.loadTime.Seconds()})
	}
	for ver, f := range m.failed {
		at := f.at
		st.Versions = append(st.Versions, VersionStatus{Version: ver, State: "failed", Error: f.err.Error(), FailedAt: &at})
	}
	slices.SortStableFunc(st.Versions, func(a, b VersionStatus) int { return compareVersions(a.Version, b.Version) })
	return st
}

type reloadJSONT struct {
	Loaded   []string `json:"loaded"`
	Retired  []string `json:"retired"`
	Failed   []string `json:"failed"`
	Serving  int      `json:"serving"`
	Duration float64  `json:"seconds"`
}

func reloadJSON(r ReloadResult) reloadJSONT {
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return reloadJSONT{Loaded: nz(r.Loaded), Retired: nz(r.Retired), Failed: nz(r.Failed),
		Serving: r.Serving, Duration: r.Duration.Seconds()}
}
