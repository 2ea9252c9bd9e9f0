package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/predictd/predictd/sidecar"
)

const checkUsage = `Usage: predictd check DIR

Loads every version in the model repository DIR (DIR/<name>/<version>/model.yaml) the
way "predictd serve" would: parses each manifest (unknown keys are errors), loads and
warms each model, and checks the features it lists. Prints one line per version and
exits 1 if any failed, 2 on bad usage.
`

func runCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	dir := fs.Arg(0)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		fmt.Fprintf(os.Stderr, "predictd check: %s is not a directory\n", dir)
		return 1
	}
	results := sidecar.Check(os.DirFS(dir), dir, nil)
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", r.Name, r.Err)
		} else {
			fmt.Printf("ok   %s\n", r.Name)
		}
	}
	if len(results) == 0 {
		fmt.Printf("FAIL %s: no models (want %s/<name>/<version>/model.yaml)\n", dir, dir)
		return 1
	}
	if failed > 0 {
		fmt.Printf("%d of %d failed\n", failed, len(results))
		return 1
	}
	return 0
}
