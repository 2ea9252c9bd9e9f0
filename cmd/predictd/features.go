package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/predictd/predictd/features"
	"github.com/redis/go-redis/v9"
)

const featuresUsage = `Usage:
  predictd features load --group G --file F [--groups DIR]
                         (--redis ADDR | --cluster ADDR,ADDR,... | --snapshot PATH) [flags]

Loads feature rows of group G (declared in DIR/*.group.yaml) from F into Redis, a Redis
Cluster or an embedded snapshot file. F is CSV with a header naming the group's key column
and any of its features (list and embedding cells: space-separated numbers; an empty cell
deletes the stored value), JSON lines with the same names (--format jsonl, or a .jsonl or
.ndjson file), or Parquet whose top-level columns carry the names (--format parquet, or a
.parquet file; lists and embeddings as a LIST of float or double; null deletes the stored
value). "-" reads stdin (Parquet from stdin is first copied to a temporary file). A row
with a bad cell is refused whole and reported with its line number (Parquet: "F: row N");
the exit status is 1 when any row was refused. Loading the same file twice leaves the same
state.

predictd features get --group G [--groups DIR]
                      (--redis ADDR | --cluster ADDR,ADDR,... | --snapshot PATH) [--json] KEY...

Reads entities KEY... of group G back, straight from the store (no cache), and prints
every stored value decoded by its declared type, when the entity was last written and
how old that is, and which source answered. A feature the entity does not hold is shown
with the default a model would get. The exit status is 1 when some KEY is not in the
store, 2 on a usage error.

Flags (load):
`

func runFeatures(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, featuresUsage)
		loadFlags(os.Stderr).PrintDefaults()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "load":
		return runFeaturesLoad(args[1:])
	case "get":
		return runFeaturesGet(args[1:], os.Stdout)
	}
	fmt.Fprintf(os.Stderr, "predictd features: unknown subcommand %q (want load or get)\n", args[0])
	return 2
}

type loadOpts struct {
	group, file, groups, format  string
	redisAddr, cluster, snapshot string
	batch, maxBad                int
	quiet                        bool
	timeout                      time.Duration
}

var lo loadOpts

func loadFlags(out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("predictd features load", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&lo.group, "group", "", "feature group to load (required)")
	fs.StringVar(&lo.file, "file", "", `input file, or "-" for stdin (required)`)
	fs.StringVar(&lo.groups, "groups", ".", "directory holding the *.group.yaml declarations")
	fs.StringVar(&lo.format, "format", "", `input format: csv, jsonl or parquet (default: from the file name, else csv)`)
	fs.StringVar(&lo.redisAddr, "redis", "", "Redis address host:port (or a redis:// URL)")
	fs.StringVar(&lo.cluster, "cluster", "", "comma-separated Redis Cluster node addresses")
	fs.StringVar(&lo.snapshot, "snapshot", "", "embedded-store snapshot file to create or update")
	fs.IntVar(&lo.batch, "batch", 500, "rows per pipelined write")
	fs.IntVar(&lo.maxBad, "max-bad", 1000, "stop after this many bad rows")
	fs.BoolVar(&lo.quiet, "quiet", false, "no progress line")
	fs.DurationVar(&lo.timeout, "timeout", 0, "give up after this long (0: no limit)")
	return fs
}

func runFeaturesLoad(args []string) int {
	fs := loadFlags(os.Stderr)
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
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "predictd features load: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	targets := 0
	for _, s := range []string{lo.redisAddr, lo.cluster, lo.snapshot} {
		if s != "" {
			targets++
		}
	}
	if lo.group == "" || lo.file == "" || targets != 1 {
		fmt.Fprintln(os.Stderr, "predictd features load: need --group, --file and exactly one of --redis, --cluster, --snapshot")
		return 2
	}
	if err := featuresLoad(); err != nil {
		fmt.Fprintf(os.Stderr, "predictd features load: %v\n", err)
		return 1
	}
	return exitCode
}

var exitCode int

func featuresLoad() error {
	groups, err := features.LoadGroups(lo.groups)
	if err != nil {
		return err
	}
	g, ok := groups[lo.group]
	if !ok {
		return fmt.Errorf("no feature group %q in %s/*.group.yaml", lo.group, lo.groups)
	}
	in := os.Stdin
	if lo.file != "-" {
		if in, err = os.Open(lo.file); err != nil {
			return err
		}
		defer in.Close()
	}
	format := lo.format
	if format == "" {
		format = "csv"
		switch {
		case strings.HasSuffix(lo.file, ".jsonl") || strings.HasSuffix(lo.file, ".ndjson"):
			format = "jsonl"
		case strings.HasSuffix(lo.file, ".parquet"):
			format = "parquet"
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if lo.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lo.timeout)
		defer cancel()
	}

	var (
		sink features.Sink
		emb  *features.Embedded
	)
	switch {
	case lo.redisAddr != "":
		opt := &redis.Options{Addr: lo.redisAddr}
		if strings.HasPrefix(lo.redisAddr, "redis://") || strings.HasPrefix(lo.redisAddr, "rediss://") {
			if opt, err = redis.ParseURL(lo.redisAddr); err != nil {
				return err
			}
		}
		c := redis.NewClient(opt)
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis %s: %w", lo.redisAddr, err)
		}
		warnListpack(ctx, c, g)
		sink = features.RedisSink{Client: c}
	case lo.cluster != "":
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(lo.cluster, ",")})
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis cluster %s: %w", lo.cluster, err)
		}
		sink = features.RedisSink{Client: c}
	default:
		emb = features.NewEmbedded()
		if _, err := os.Stat(lo.snapshot); err == nil {
			if emb, err = features.LoadSnapshot(lo.snapshot); err != nil {
				return err
			}
		}
		sink = emb
	}
	cfg := features.LoadConfig{Group: g, Sink: sink, Format: format, BatchRows: lo.batch, MaxBadRows: lo.maxBad}
	if !lo.quiet {
		cfg.Progress = os.Stderr
	}
	st, err := features.Load(ctx, in, cfg)
	for _, b := range st.BadRows {
		if format == "parquet" { // Parquet has rows, not lines
			fmt.Fprintf(os.Stderr, "%s: row %d: %s\n", lo.file, b.Line, b.Err)
			continue
		}
		fmt.Fprintf(os.Stderr, "%s:%d: %s\n", lo.file, b.Line, b.Err)
	}
	if st.Bad > len(st.BadRows) {
		fmt.Fprintf(os.Stderr, "... and %d more bad rows\n", st.Bad-len(st.BadRows))
	}
	if err == nil && emb != nil {
		err = emb.SaveSnapshot(lo.snapshot)
	}
	fmt.Fprintf(os.Stderr, "loaded %d rows of %s in %v (%.0f rows/s), %d bad\n",
		st.Rows, g.Name, st.Elapsed.Round(time.Millisecond), st.RowsPerSecond(), st.Bad)
	if st.Bad > 0 {
		exitCode = 1
	}
	return err
}

// warnListpack warns when the server would store this group's largest values outside the
// compact listpack hash encoding, which costs most of the layout's memory savings.
func warnListpack(ctx context.Context, c *redis.Client, g *features.Group) {
	need := 0
	for i := range g.Features {
		if w := 4*g.Features[i].Width() + 1; w > need {
			need = w
		}
	}
	vals, err := c.ConfigGet(ctx, "hash-max-listpack-value").Result()
	if err != nil {
		return
	}
	var have int
	fmt.Sscan(vals["hash-max-listpack-value"], &have)
	if have > 0 && have < need {
		fmt.Fprintf(os.Stderr, "warning: hash-max-listpack-value is %d but %s's vectors take up to %d bytes; "+
			"raise it (CONFIG SET hash-max-listpack-value %d) to keep the compact encoding (docs/feature-store.md)\n",
			have, g.Name, need, need)
	}
}
