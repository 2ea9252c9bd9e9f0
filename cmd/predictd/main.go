// Command predictd is the prediction sidecar: it serves models over HTTP (serve, the
// default), validates model directories (check), scores files offline (score) and loads
// feature-store data (features).
package main

import (
	"fmt"
	"os"
)

const usage = `predictd — a prediction sidecar for ranking services

Usage:
  predictd [serve] [flags]        serve models over HTTP (the default command)
  predictd check DIR              validate a model directory; non-zero exit on problems
  predictd score [flags]          score a CSV or LibSVM file offline
  predictd features load [flags]  load feature-store rows into Redis or a snapshot
  predictd features get [flags] KEY...  print stored entities, decoded, with their age
  predictd help                   this text

Run "predictd COMMAND --help" for a command's flags.
`

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var code int
	switch cmd {
	case "serve":
		code = runServe(args)
	case "check":
		code = runCheck(args)
	case "score":
		code = runScore(args)
	case "features":
		code = runFeatures(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "predictd: unknown command %q\n\n%s", cmd, usage)
		code = 2
	}
	os.Exit(code)
}
