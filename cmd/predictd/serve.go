package main

import (
	"fmt"
	"os"
)

// TEMPORARY placeholder, replaced by the real command.
func runServe(args []string) int {
	fmt.Fprintln(os.Stderr, "predictd serve: not built yet")
	return 1
}
