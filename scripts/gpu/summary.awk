# summary.awk bench.txt: the ratios the GPU targets are about, from one benchmark run.
#   engine/raw at each batch (target on cuda at batch 8192: >= 0.90)
#   batched/unbatched for 64 clients x 128 rows (target: >= 3)
# A benchmark line: name-P  N  ns/op  [MB/s]  rows/s-value "rows/s" ...
{
  rate = ""
  for (i = 2; i < NF; i++) if ($(i + 1) == "rows/s") rate = $i
  if ($1 !~ /^Benchmark/ || rate == "") next
  name = $1; sub(/-[0-9]+$/, "", name)
  r[name] = rate
}
END {
  printf "%-48s %14s %14s %8s\n", "benchmark (rows/s)", "baseline", "engine", "ratio"
  for (k in r) {
    if (k ~ /\/raw$/) {
      base = k; sub(/\/raw$/, "", base)
      for (v = 1; v <= 2; v++) {
        e = base (v == 1 ? "/engine" : "/engine-copy")
        if (e in r) printf "%-48s %14.0f %14.0f %8.3f\n", e " vs raw", r[k], r[e], r[e] / r[k]
      }
    }
    if (k ~ /\/unbatched$/) {
      base = k; sub(/\/unbatched$/, "", base)
      if ((base "/batched") in r) printf "%-48s %14.0f %14.0f %8.3f\n", base " batched vs unbatched", r[k], r[base "/batched"], r[base "/batched"] / r[k]
    }
  }
}
