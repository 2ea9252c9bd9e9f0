// Package features is predictd's feature store: entity features kept in Redis (standalone or
// Cluster) in a compact layout, a bounded in-process cache in front of it, an embedded
// in-memory store filled from a snapshot file when no Redis is configured, a loader that
// writes CSV, JSON-lines or Parquet rows into either, and a circuit breaker so that a slow or dead Redis costs a
// degraded answer, never a failed one. docs/feature-store.md describes the layout.
package features

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"gopkg.in/yaml.v3"
)

// Type is a feature's value type.
type Type string

const (
	Float32   Type = "float32"   // 4 bytes little-endian IEEE 754
	Float64   Type = "float64"   // 8 bytes little-endian IEEE 754
	Int64     Type = "int64"     // 8 bytes little-endian two's complement
	String    Type = "string"    // the bytes themselves
	List      Type = "list"      // up to Len float32 values, packed and compressed
	Embedding Type = "embedding" // exactly Dim float32 values, packed and compressed
)

// Sentinel errors, wrapped with context by the functions that return them.
var (
	ErrUnknownGroup   = errors.New("unknown feature group")
	ErrUnknownFeature = errors.New("unknown feature")
	ErrCollision      = errors.New("feature name hash collision")
	ErrBadValue       = errors.New("bad feature value")
	ErrShape          = errors.New("wrong buffer size")
)

// timestampField is the reserved field id of an entity's freshness timestamp (unix
// milliseconds, int64 little-endian). A feature whose name hashes to it is refused.
const timestampField uint32 = 0

// Feature is one declared feature of a group.
type Feature struct {
	Name string `yaml:"name"`
	Type Type   `yaml:"type"`
	// Len is the most values a List holds (required for lists); its numeric width.
	Len int `yaml:"len,omitempty"`
	// Dim is an Embedding's exact length (required for embeddings); its numeric width.
	Dim int `yaml:"dim,omitempty"`
	// Default is the value used when the entity or the value is absent, or the store is
	// unreachable; nil means missing (NaN). Lists and embeddings default to NaN.
	Default *float64 `yaml:"default,omitempty"`

	id uint32 // low 32 bits of xxhash64(Name): the Redis hash field
}

// ID returns the feature's field id: the low 32 bits of xxhash64 of its name.
func (f *Feature) ID() uint32 { return f.id }

// Width returns how many float64 columns the feature fills in a Fetch: 1 for scalars, Len
// for lists (padded with NaN), Dim for embeddings, 0 for strings (not numeric).
func (f *Feature) Width() int {
	switch f.Type {
	case Float32, Float64, Int64:
		return 1
	case List:
		return f.Len
	case Embedding:
		return f.Dim
	}
	return 0
}

// Group is a feature group: the features of one kind of entity, stored as one Redis hash
// per entity. A Group is immutable after NewGroup and safe for concurrent use.
type Group struct {
	// Name names the group in keys and requests; letters, digits, '_', '-' and '.'.
	Name string `yaml:"name"`
	// Key is the name of the entity id (e.g. store_id): the key column in load files and
	// the request key that selects the entity.
	Key string `yaml:"key"`
	// TTL is how long a cached entity is fresh; default 1m.
	TTL Duration `yaml:"ttl,omitempty"`
	// MaxStale is how old a cached entity may be and still answer when Redis is
	// unreachable (a degraded answer); default 10×TTL; must not be shorter than TTL.
	MaxStale Duration `yaml:"max_stale,omitempty"`
	// Codec compresses lists and embeddings: "shuffle-snappy" (default), "snappy", "s2",
	// "zstd" or "none".
	Codec    string    `yaml:"codec,omitempty"`
	Features []Feature `yaml:"features"`

	byName map[string]int
	codec  codec
}

// Duration is a time.Duration that reads "5m" style strings from YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w (want e.g. \"30s\" or \"5m\")", n.Line, err)
	}
	if v < 0 {
		return fmt.Errorf("line %d: negative duration %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// FieldID returns the Redis hash field id of a feature name.
func FieldID(name string) uint32 { return uint32(xxhash.Sum64String(name)) }

// ParseGroup parses one group declaration (YAML) and validates it with NewGroup. Unknown
// keys are errors.
func ParseGroup(data []byte) (*Group, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var g Group
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("feature group: %w", err)
	}
	return NewGroup(g)
}

// LoadGroups reads every "*.group.yaml" file in dir (not recursively) and returns the
// groups by name. Duplicate names, collisions and bad declarations are errors naming the
// file. A dir without group files yields an empty map.
func LoadGroups(dir string) (map[string]*Group, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.group.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	groups := make(map[string]*Group, len(paths))
	from := make(map[string]string, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		g, err := ParseGroup(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if prev, ok := from[g.Name]; ok {
			return nil, fmt.Errorf("%s: feature group %q is also declared in %s", p, g.Name, prev)
		}
		groups[g.Name], from[g.Name] = g, p
	}
	return groups, nil
}

// NewGroup validates a group declaration, fills defaults and computes field ids. It refuses
// two features whose names hash to the same field id (ErrCollision): their values would
// overwrite each other in Redis.
func NewGroup(g Group) (*Group, error) {
	if !validName(g.Name) {
		return nil, fmt.Errorf("feature group name %q: want 1-64 letters, digits, '_', '-' or '.'", g.Name)
	}
	if g.Key == "" {
		return nil, fmt.Errorf("feature group %q: key (the entity id name, e.g. store_id) is required", g.Name)
	}
	if len(g.Features) == 0 {
		return nil, fmt.Errorf("feature group %q: no features", g.Name)
	}
	if g.TTL == 0 {
		g.TTL = Duration(time.Minute)
	}
	if g.MaxStale == 0 {
		g.MaxStale = 10 * g.TTL
	}
	if g.MaxStale < g.TTL {
		return nil, fmt.Errorf("feature group %q: max_stale %v is shorter than ttl %v", g.Name, time.Duration(g.MaxStale), time.Duration(g.TTL))
	}
	c, err := codecByName(g.Codec)
	if err != nil {
		return nil, fmt.Errorf("feature group %q: %w", g.Name, err)
	}
	g.codec = c
	g.Features = append([]Feature(nil), g.Features...)
	g.byName = make(map[string]int, len(g.Features))
	byID := make(map[uint32]string, len(g.Features))
	for i := range g.Features {
		f := &g.Features[i]
		where := fmt.Sprintf("feature group %q, feature %d (%q)", g.Name, i+1, f.Name)
		if f.Name == "" {
			return nil, fmt.Errorf("%s: name is required", where)
		}
		if f.Name == g.Key {
			return nil, fmt.Errorf("%s: a feature cannot be named like the key", where)
		}
		if _, dup := g.byName[f.Name]; dup {
			return nil, fmt.Errorf("%s: declared twice", where)
		}
		switch f.Type {
		case Float32, Float64, Int64, String:
			if f.Len != 0 || f.Dim != 0 {
				return nil, fmt.Errorf("%s: len/dim apply only to list and embedding", where)
			}
		case List:
			if f.Len < 1 || f.Len > maxVectorLen || f.Dim != 0 {
				return nil, fmt.Errorf("%s: a list needs len between 1 and %d (and no dim)", where, maxVectorLen)
			}
		case Embedding:
			if f.Dim < 1 || f.Dim > maxVectorLen || f.Len != 0 {
				return nil, fmt.Errorf("%s: an embedding needs dim between 1 and %d (and no len)", where, maxVectorLen)
			}
		case "":
			return nil, fmt.Errorf("%s: type is required (float32, float64, int64, string, list or embedding)", where)
		default:
			return nil, fmt.Errorf("%s: unknown type %q (want float32, float64, int64, string, list or embedding)", where, f.Type)
		}
		if f.Default != nil {
			if f.Type == String || f.Type == List || f.Type == Embedding {
				return nil, fmt.Errorf("%s: only numeric scalars take a default", where)
			}
			if math.IsInf(*f.Default, 0) {
				return nil, fmt.Errorf("%s: default must be finite or omitted", where)
			}
			v := *f.Default
			f.Default = &v
		}
		f.id = FieldID(f.Name)
		if f.id == timestampField {
			return nil, fmt.Errorf("%s: %w: its field id is 0, reserved for the freshness timestamp; rename it", where, ErrCollision)
		}
		if other, ok := byID[f.id]; ok {
			return nil, fmt.Errorf("%s: %w with feature %q (both hash to field id %#08x); rename one", where, ErrCollision, other, f.id)
		}
		byID[f.id] = f.Name
		g.byName[f.Name] = i
	}
	return &g, nil
}

// maxVectorLen bounds list and embedding lengths so a bad declaration cannot make the
// reader allocate without limit; 65536 float32 is 256 KiB per value.
const maxVectorLen = 1 << 16

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Feature returns the named feature.
func (g *Group) Feature(name string) (*Feature, error) {
	i, ok := g.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w %q in group %q", ErrUnknownFeature, name, g.Name)
	}
	return &g.Features[i], nil
}

// RedisKey appends the Redis key of an entity of the group to dst: "g:" + group + ":" +
// entity. It deliberately has no {hash tag}: a tag would put every entity of a group in one
// Cluster slot, on one node; without one, entities spread over all masters.
func (g *Group) RedisKey(dst []byte, entity string) []byte {
	dst = append(dst, "g:"...)
	dst = append(dst, g.Name...)
	dst = append(dst, ':')
	return append(dst, entity...)
}

// fieldKey appends a field id's 4-byte little-endian form, the Redis hash field name.
func fieldKey(dst []byte, id uint32) []byte {
	return binary.LittleEndian.AppendUint32(dst, id)
}

// String describes the group in one line.
func (g *Group) String() string {
	names := make([]string, len(g.Features))
	for i := range g.Features {
		names[i] = g.Features[i].Name + ":" + string(g.Features[i].Type)
	}
	return fmt.Sprintf("%s(key=%s; %s)", g.Name, g.Key, strings.Join(names, ", "))
}
