package main

import (
	"fmt"
	"os"
)

// TEMPORARY placeholder, replaced by the real command.
func runScore(args []string) int {
	fmt.Fprintln(os.Stderr, "predictd score: not built yet")
	return 1
}
