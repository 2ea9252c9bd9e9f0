package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/predictd/predictd/features"
	"github.com/predictd/predictd/features/sidecarstore"
	"github.com/predictd/predictd/sidecar"
)

const checkUsage = `Usage: predictd check [--features GROUPS_DIR] DIR

Loads every version in the model repository DIR (DIR/<name>/<version>/model.yaml, or
a version's lone .txt, .json or .ubj model file) the way "predictd serve" would: parses
each manifest (unknown keys are errors), loads and warms each model, and checks the
features it lists. The feature group declarations
(*.group.yaml in --features, default DIR) are validated, and each store-backed feature
is resolved against them (name, numeric type, default). Prints one line per version and
exits 1 if any failed, 2 on bad usage. Model files are read as the server reads them:
regular files only (links to them are followed), at most --max-model-bytes.
`

// publishNote is check's last line: how to put a checked version in front of a server.
const publishNote = "publish: write a version as DIR/<name>/.tmp-<version>/ and rename it to DIR/<name>/<version>/; never rewrite a served model file in place"

func runCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage) }
	groupsDir := fs.String("features", "", "directory of *.group.yaml feature groups (default: DIR)")
	maxModel := fs.Int64("max-model-bytes", sidecar.DefaultMaxModelBytes, "largest model file in bytes, as serve's flag")
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
	if *groupsDir == "" {
		*groupsDir = dir
	}
	store, closeStore, err := checkFeatureStore(*groupsDir)
	if err != nil {
		fmt.Printf("FAIL feature groups in %s: %v\n", *groupsDir, err)
		return 1
	}
	defer closeStore()
	results := sidecar.CheckLimited(sidecar.ModelDirFS(dir), dir, store, formats(), *maxModel)
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
		fmt.Println(publishNote)
		return 1
	}
	fmt.Println(publishNote)
	return 0
}

// checkFeatureStore is the store predictd check validates manifests against: the
// groups of dir over an empty embedded store, so names, types and defaults are checked
// without Redis.
func checkFeatureStore(dir string) (sidecar.FeatureStore, func(), error) {
	groups, err := features.LoadGroups(dir)
	if err != nil {
		return nil, func() {}, err
	}
	st, err := features.Open(features.Config{Groups: groups})
	if err != nil {
		return nil, func() {}, err
	}
	return sidecarstore.New(st, "snapshot"), func() { st.Close() }, nil
}
