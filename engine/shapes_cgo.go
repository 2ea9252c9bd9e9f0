//go:build cgo

package engine

/*
#include "predictd.h"
*/
import "C"

// setPreviousWalks makes the core walk trees as it did before the partition walk (on) or
// as it does now (off), so benchmarks and tests compare the two in one process. Tests and
// benchmarks only: it is process-wide and must not race with predict calls.
func setPreviousWalks(on bool) {
	v := C.int(0)
	if on {
		v = 4
	}
	C.pd_walk_lockstep(v)
}

// setWalkFlags sets the core's test hook pd_walk_lockstep to v (its bits in predictd.h);
// setPreviousWalks(true) is setWalkFlags(4). The same rules as setPreviousWalks.
func setWalkFlags(v int) { C.pd_walk_lockstep(C.int(v)) }
