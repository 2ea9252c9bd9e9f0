// Package examples bundles the demo model repository that `predictd serve` serves when
// no --models directory is given (see README.md here).
package examples

import (
	"embed"
	"io/fs"
)

//go:embed models
var models embed.FS

// Models returns the demo repository: claims/1/model.yaml and its LightGBM model.
func Models() fs.FS {
	sub, err := fs.Sub(models, "models")
	if err != nil {
		panic("BUG: embedded models: " + err.Error())
	}
	return sub
}
