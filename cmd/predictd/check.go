package main

import (
	"fmt"
	"os"
)

// TEMPORARY placeholder, replaced by the real command.
func runCheck(args []string) int {
	fmt.Fprintln(os.Stderr, "predictd check: not built yet")
	return 1
}
