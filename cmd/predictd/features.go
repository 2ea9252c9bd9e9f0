package main

import (
	"fmt"
	"os"
)

// TEMPORARY placeholder, replaced by the real command.
func runFeatures(args []string) int {
	fmt.Fprintln(os.Stderr, "predictd features: not built yet")
	return 1
}
