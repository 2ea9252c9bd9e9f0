package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/redis/go-redis/v9"
)

type getOpts struct {
	group, groups                string
	redisAddr, cluster, snapshot string
	json                         bool
	timeout                      time.Duration
}

func getFlags(out io.Writer, o *getOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("predictd features get", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.group, "group", "", "feature group of the keys (required)")
	fs.StringVar(&o.groups, "groups", ".", "directory holding the *.group.yaml declarations")
	fs.StringVar(&o.redisAddr, "redis", "", "Redis address host:port (or a redis:// URL)")
	fs.StringVar(&o.cluster, "cluster", "", "comma-separated Redis Cluster node addresses")
	fs.StringVar(&o.snapshot, "snapshot", "", "embedded-store snapshot file to read")
	fs.BoolVar(&o.json, "json", false, "one JSON object per key instead of text")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "give up after this long")
	return fs
}

// entityView is what `features get` prints of one entity.
type entityView struct {
	Group   string         `json:"group"`
	Key     string         `json:"key"`
	Found   bool           `json:"found"`
	Source  string         `json:"source"`
	Updated *time.Time     `json:"updated,omitempty"`
	AgeSec  *float64       `json:"age_seconds,omitempty"`
	Values  []featureValue `json:"features"`
}

type featureValue struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Stored  bool   `json:"stored"`          // false: the entity does not hold it
	Value   any    `json:"value,omitempty"` // decoded by type (vectors as arrays)
	Default any    `json:"default,omitempty"`
}

func runFeaturesGet(args []string, stdout io.Writer) int {
	var o getOpts
	fs := getFlags(os.Stderr, &o)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, featuresUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	targets := 0
	for _, s := range []string{o.redisAddr, o.cluster, o.snapshot} {
		if s != "" {
			targets++
		}
	}
	if o.group == "" || fs.NArg() == 0 || targets != 1 {
		fmt.Fprintln(os.Stderr, "predictd features get: need --group, exactly one of --redis, --cluster, --snapshot, and at least one KEY")
		return 2
	}
	views, err := featuresGet(&o, fs.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "predictd features get: %v\n", err)
		return 1
	}
	code := 0
	for _, v := range views {
		if !v.Found {
			code = 1
		}
		if o.json {
			b, _ := json.Marshal(v)
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		writeEntityText(stdout, v)
	}
	return code
}

func featuresGet(o *getOpts, keys []string) ([]entityView, error) {
	groups, err := features.LoadGroups(o.groups)
	if err != nil {
		return nil, err
	}
	g, ok := groups[o.group]
	if !ok {
		return nil, fmt.Errorf("no feature group %q in %s/*.group.yaml", o.group, o.groups)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cfg := features.Config{Groups: groups}
	source := "redis"
	switch {
	case o.redisAddr != "":
		opt := &redis.Options{Addr: o.redisAddr}
		if strings.Contains(o.redisAddr, "://") {
			if opt, err = redis.ParseURL(o.redisAddr); err != nil {
				return nil, err
			}
		}
		c := redis.NewClient(opt)
		defer c.Close()
		cfg.Redis = c
	case o.cluster != "":
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(o.cluster, ",")})
		defer c.Close()
		cfg.Redis = c
	default:
		source = "snapshot"
		if cfg.Embedded, err = features.LoadSnapshot(o.snapshot); err != nil {
			return nil, err
		}
	}
	st, err := features.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	now := time.Now()
	var out []entityView
	for _, key := range keys {
		vals, updated, found, err := st.Lookup(ctx, g.Name, key)
		if err != nil {
			return out, fmt.Errorf("%s %q: %w", g.Name, key, err)
		}
		v := entityView{Group: g.Name, Key: key, Found: found, Source: source}
		if found {
			u := updated.UTC()
			age := now.Sub(updated).Seconds()
			v.Updated, v.AgeSec = &u, &age
		}
		for i := range g.Features {
			f := &g.Features[i]
			fv := featureValue{Name: f.Name, Type: typeName(f)}
			if val, ok := vals[f.Name]; ok {
				fv.Stored, fv.Value = true, valueOf(f, val)
			} else if f.Default != nil {
				fv.Default = jsonFloat(*f.Default)
			}
			v.Values = append(v.Values, fv)
		}
		out = append(out, v)
	}
	return out, nil
}

func typeName(f *features.Feature) string {
	switch f.Type {
	case features.List:
		return fmt.Sprintf("list[%d]", f.Len)
	case features.Embedding:
		return fmt.Sprintf("embedding[%d]", f.Dim)
	}
	return string(f.Type)
}

// valueOf is v as JSON can hold it: NaN and ±Inf become strings.
func valueOf(f *features.Feature, v features.Value) any {
	switch f.Type {
	case features.Int64:
		return v.I
	case features.String:
		return string(v.S)
	case features.List, features.Embedding:
		out := make([]any, len(v.V))
		for i, x := range v.V {
			out[i] = jsonFloat(float64(x))
		}
		return out
	}
	return jsonFloat(v.F)
}

func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return x
}

func writeEntityText(w io.Writer, v entityView) {
	if !v.Found {
		fmt.Fprintf(w, "%s %s: not in the %s store (every feature takes its default)\n", v.Group, v.Key, v.Source)
	} else {
		fmt.Fprintf(w, "%s %s: from %s, updated %s (%s ago)\n", v.Group, v.Key, v.Source,
			v.Updated.Format(time.RFC3339Nano), time.Duration(*v.AgeSec*float64(time.Second)).Round(time.Millisecond))
	}
	width := 0
	for _, f := range v.Values {
		width = max(width, len(f.Name))
	}
	for _, f := range v.Values {
		var val string
		switch {
		case f.Stored:
			b, _ := json.Marshal(f.Value)
			val = string(b)
		case f.Default != nil:
			val = fmt.Sprintf("absent (default %v)", f.Default)
		default:
			val = "absent (missing: NaN)"
		}
		fmt.Fprintf(w, "  %-*s  %-14s %s\n", width, f.Name, f.Type, val)
	}
}
