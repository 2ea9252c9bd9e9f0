package sidecar

import (
	"slices"
	"time"

	"github.com/predictd/predictd/sidecar/admission"
	"github.com/predictd/predictd/sidecar/shadow"
)

// ModelStatus is one model in GET /v1/models.
type ModelStatus struct {
	Name string `json:"name"`
	// Serving is the version requests without "version" get; empty when none loaded.
	Serving  string          `json:"serving"`
	Versions []VersionStatus `json:"versions"`
	// Admission is the model's bulkhead (with admission control on).
	Admission *admission.Stats `json:"admission,omitempty"`
	// Log is the model's prediction log (with a log section in model.yaml).
	Log *LogStatus `json:"log,omitempty"`
}

// LogStatus is a prediction log's counters (sidecar/predlog): written + failed =
// accepted once the log is closed.
type LogStatus struct {
	Accepted uint64 `json:"accepted"`
	Dropped  uint64 `json:"dropped"`
	Written  uint64 `json:"written"`
	Failed   uint64 `json:"failed"`
	Bytes    uint64 `json:"bytes"`
	Files    uint64 `json:"files"`
	Error    string `json:"error,omitempty"`
}

// VersionStatus is one version of a model: loaded (State "serving" or "loaded"), or
// "failed" with the error. A failed version whose older copy still serves appears twice:
// once loaded, once failed.
type VersionStatus struct {
	Version     string `json:"version"`
	State       string `json:"state"`
	Format      string `json:"format,omitempty"`
	Output      string `json:"output,omitempty"`
	NumFeatures int    `json:"num_features,omitempty"`
	NumOutputs  int    `json:"num_outputs,omitempty"`
	// NumOutputsRaw and NumOutputsTransformed are the scores per row a request gets
	// with "output": "raw" or "transformed", given where they differ from NumOutputs
	// (the version's own output): an XGBoost multi:softmax model answers one class
	// transformed and a margin per class raw.
	NumOutputsRaw         int        `json:"num_outputs_raw,omitempty"`
	NumOutputsTransformed int        `json:"num_outputs_transformed,omitempty"`
	Features              []string   `json:"features,omitempty"`
	LoadedAt              *time.Time `json:"loaded_at,omitempty"`
	LoadSeconds           float64    `json:"load_seconds,omitempty"`
	Error                 string     `json:"error,omitempty"`
	FailedAt              *time.Time `json:"failed_at,omitempty"`
	Backend               string     `json:"backend,omitempty"`
	// Traversal is how the C++ core scores a tree model (engine.Model.Traversal).
	Traversal string `json:"traversal,omitempty"`
	// CategoryLabels counts, per feature that takes category labels (a string value
	// for its code: LightGBM's pandas_categorical), the labels the model names;
	// CategoryNote says why names in the model file were not applied.
	CategoryLabels map[string]int `json:"category_labels,omitempty"`
	CategoryNote   string         `json:"category_note,omitempty"`
	// Device is where the model actually runs, for predictors that choose (ONNX:
	// "cpu", "cuda:0", or "cpu (cuda requested: ...)" after a fallback).
	Device string  `json:"device,omitempty"`
	Weight float64 `json:"weight,omitempty"`
	// Shadows are this version's shadow models and their agreement with it.
	Shadows []shadow.Stats `json:"shadows,omitempty"`
	// ShadowErrors are shadows named in model.yaml that could not be attached.
	ShadowErrors []string `json:"shadow_errors,omitempty"`
	// StoreFeatures are the features the feature store fills (the others come with the
	// request), with the columns they fill.
	StoreFeatures []StoreFeatureStatus `json:"store_features,omitempty"`
}

// StoreFeatureStatus is one store-backed feature of a version (model.yaml's {name,
// group, key, default}).
type StoreFeatureStatus struct {
	Name    string   `json:"name"`
	Group   string   `json:"group"`
	Key     string   `json:"key"`
	Default *float64 `json:"default,omitempty"`
	// Column is the first model column it fills, Width how many (a list's or an
	// embedding's length; 1 for a scalar).
	Column int `json:"column"`
	Width  int `json:"width"`
}

// ModelsStatus is GET /v1/models.
type ModelsStatus struct {
	Models     []ModelStatus `json:"models"`
	ReloadedAt time.Time     `json:"reloaded_at"`
	Error      string        `json:"error,omitempty"`
	// Overloaded counts process-wide (503) admission rejections.
	Overloaded *uint64 `json:"overloaded,omitempty"`
}

// Models reports every model and version of the current snapshot.
func (r *Registry) Models() ModelsStatus {
	s := r.snap.Load()
	st := ModelsStatus{Models: []ModelStatus{}, ReloadedAt: s.at}
	if s.err != nil {
		st.Error = s.err.Error()
	}
	for _, name := range s.names {
		st.Models = append(st.Models, r.modelStatus(s.models[name]))
	}
	if r.prod != nil && r.prod.lim != nil {
		_, n := r.prod.lim.Stats()
		st.Overloaded = &n
	}
	return st
}

// Model reports one model.
func (r *Registry) Model(name string) (ModelStatus, bool) {
	m := r.snap.Load().models[name]
	if m == nil {
		return ModelStatus{}, false
	}
	return r.modelStatus(m), true
}

func (r *Registry) modelStatus(m *modelSet) ModelStatus {
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
		weight := v.manifest.Weight
		if weight == 0 {
			weight = 1
		}
		vs := VersionStatus{Version: v.version, State: state,
			Format: v.manifest.Format, Output: output, NumFeatures: v.nfeat,
			NumOutputs: v.pred.NumOutputs(v.raw), Features: v.names, LoadedAt: &at,
			LoadSeconds: v.loadTime.Seconds(), Backend: v.info.Backend, Traversal: v.info.Traversal, Device: v.info.Device, Weight: weight,
			CategoryLabels: describeLabels(v), CategoryNote: v.info.CategoryNote}
		if other := v.pred.NumOutputs(!v.raw); other != vs.NumOutputs {
			if v.raw {
				vs.NumOutputsTransformed = other
			} else {
				vs.NumOutputsRaw = other
			}
		}
		for _, c := range v.stored {
			vs.StoreFeatures = append(vs.StoreFeatures, StoreFeatureStatus{Name: c.Spec.Name, Group: c.Spec.Group,
				Key: c.Spec.Key, Default: c.Spec.Default, Column: c.Column, Width: max(c.Width, 1)})
		}
		if a := v.attach.Load(); a != nil {
			for _, sh := range a.shadows {
				vs.Shadows = append(vs.Shadows, sh.Stats())
			}
			vs.ShadowErrors = a.errs
			if v == latest && (a.logger != nil || a.logErr != "") {
				ls := &LogStatus{Error: a.logErr}
				if a.logger != nil {
					x := a.logger.Stats()
					*ls = LogStatus{Accepted: x.Accepted, Dropped: x.Dropped, Written: x.Written,
						Failed: x.Failed, Bytes: x.Bytes, Files: x.Files}
				}
				st.Log = ls
			}
		}
		st.Versions = append(st.Versions, vs)
	}
	if r.prod != nil && r.prod.lim != nil {
		if b := r.prod.lim.Bulkhead(m.name); b != nil {
			bs := b.Stats()
			st.Admission = &bs
		}
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
