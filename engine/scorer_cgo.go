//go:build cgo

package engine

/*
#cgo CFLAGS: -I${SRCDIR}/../csrc
#cgo noescape pd_predict_f64
#cgo nocallback pd_predict_f64
#cgo noescape pd_predict_f32
#cgo nocallback pd_predict_f32
#include <stdlib.h>
#include <string.h>
#include "predictd.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	_ "github.com/predictd/predictd/csrc" // the core's object code
)

// cgoAvailable reports whether the C++ core is linked in.
const cgoAvailable = true

// errBufLen is the size of the error buffer handed to the core; its messages are short.
const errBufLen = 256

// cScorer is the C++ core behind cgo. The handle is immutable, so predict calls may run
// concurrently; close must not race with them (Model.Close guarantees that).
type cScorer struct {
	h      *C.pd_ensemble
	nfeat  int
	nout   int
	kernel C.int // PD_KERNEL_DEFAULT: the kernel the process chose (pd_kernel_name); else a forced one
	label  string
}

// coreKernels names the core's kernels (PD_KERNEL_* in predictd.h); "-walk" adds
// PD_KERNEL_WALK: the tree walks even where the model has leaf tables (the previous
// design, kept for models outside the tables' limits and as a benchmark baseline).
var coreKernels = map[string]C.int{
	"generic": C.PD_KERNEL_GENERIC, "scalar": C.PD_KERNEL_SCALAR, "avx2": C.PD_KERNEL_AVX2, "avx512": C.PD_KERNEL_AVX512,
	"scalar-walk": C.PD_KERNEL_SCALAR | C.PD_KERNEL_WALK,
	"avx2-walk":   C.PD_KERNEL_AVX2 | C.PD_KERNEL_WALK,
	"avx512-walk": C.PD_KERNEL_AVX512 | C.PD_KERNEL_WALK,
}

// newCScorerKernel is newCScorer with a forced kernel ("generic", "scalar", "avx2",
// "avx512", the last three also with "-walk"); for benchmarks and tests that compare
// kernels in one process.
func newCScorerKernel(ens *Ensemble, kernel string) (*cScorer, error) {
	k, ok := coreKernels[kernel]
	if !ok {
		return nil, fmt.Errorf("unknown kernel %q", kernel)
	}
	if C.pd_kernel_supported(k) == 0 {
		return nil, fmt.Errorf("kernel %s: %w: this CPU lacks it", kernel, ErrUnsupported)
	}
	sc, err := newCScorer(ens)
	if err != nil {
		return nil, err
	}
	c := sc.(*cScorer)
	c.kernel, c.label = k, "c/"+kernel
	return c, nil
}

// info describes how the core scores this model (pd_ensemble_get_info).
func (s *cScorer) info() C.pd_ensemble_info {
	var (
		info   C.pd_ensemble_info
		errbuf [errBufLen]C.char
	)
	if rc := C.pd_ensemble_get_info(s.h, &info, &errbuf[0], errBufLen); rc != C.PD_OK {
		panic("BUG: " + s.err(rc, &errbuf).Error())
	}
	return info
}

// fastPath reports whether the core scores this model with its binned kernels (else only
// the generic walk applies, whatever kernel is chosen).
func (s *cScorer) fastPath() bool { return s.info().traversal != C.PD_TRAVERSAL_GENERIC }

// leafTables reports whether the core built leaf tables for this model (the table kernel).
func (s *cScorer) leafTables() bool { return s.info().traversal == C.PD_TRAVERSAL_LEAF_TABLES }

// traversal names how the core scores this model: "leaf tables", "heap walk", "walk", or
// "generic (REASON)" when the model is outside the binned kernels' limits.
func (s *cScorer) traversal() string {
	info := s.info()
	switch info.traversal {
	case C.PD_TRAVERSAL_LEAF_TABLES:
		return "leaf tables"
	case C.PD_TRAVERSAL_HEAP_WALK:
		return "heap walk"
	case C.PD_TRAVERSAL_WALK:
		return "walk"
	}
	return "generic (" + C.GoString(info.fallback_reason) + ")"
}

// cArena copies Go slices into one C allocation, so the spec handed to pd_ensemble_new
// holds no Go pointers (cgo pointer rules). The core copies the spec; the arena is freed
// right after pd_ensemble_new returns.
type cArena struct {
	base unsafe.Pointer
	size uintptr
	used uintptr
}

func sliceBytes[T any](s []T) uintptr {
	var z T
	return uintptr(len(s)) * unsafe.Sizeof(z)
}

// put copies s into the arena and returns its C address, or nil for an empty slice.
func put[T any](a *cArena, s []T) unsafe.Pointer {
	n := sliceBytes(s)
	if n == 0 {
		return nil
	}
	a.used = (a.used + 7) &^ 7 // 8-byte alignment for double and int32 alike
	if a.used+n > a.size {
		panic("BUG: cArena too small")
	}
	p := unsafe.Add(a.base, a.used)
	C.memcpy(p, unsafe.Pointer(&s[0]), C.size_t(n))
	a.used += n
	return p
}

func newCScorer(ens *Ensemble) (scorer, error) {
	nt := ens.NumTrees()
	total := sliceBytes(ens.BaseScore) + sliceBytes(ens.NodeStart) + sliceBytes(ens.LeafStart) +
		sliceBytes(ens.TreeOutput) + sliceBytes(ens.TreeWeight) + sliceBytes(ens.Feature) +
		sliceBytes(ens.Threshold) + sliceBytes(ens.Flags) + sliceBytes(ens.Left) + sliceBytes(ens.Right) +
		sliceBytes(ens.CatSet) + sliceBytes(ens.LeafValue) + sliceBytes(ens.CatStart) +
		sliceBytes(ens.CatBits) + sliceBytes(ens.LinearWeights) + sliceBytes(ens.LinearBias) + 16*8
	a := &cArena{base: C.malloc(C.size_t(total)), size: total}
	if a.base == nil {
		return nil, fmt.Errorf("C++ core: cannot allocate %d bytes for the model", total)
	}
	defer C.free(a.base)

	var spec C.pd_ensemble_spec
	spec.semantics = C.int32_t(ens.Semantics)
	spec.num_features = C.int32_t(ens.NumFeatures)
	spec.num_outputs = C.int32_t(ens.NumOutputs)
	spec.base_score = (*C.double)(put(a, ens.BaseScore))
	spec.num_trees = C.int32_t(nt)
	spec.node_start = (*C.int32_t)(put(a, ens.NodeStart))
	spec.leaf_start = (*C.int32_t)(put(a, ens.LeafStart))
	spec.tree_output = (*C.int32_t)(put(a, ens.TreeOutput))
	spec.tree_weight = (*C.double)(put(a, ens.TreeWeight))
	spec.feature = (*C.int32_t)(put(a, ens.Feature))
	spec.threshold = (*C.double)(put(a, ens.Threshold))
	spec.flags = (*C.uint8_t)(put(a, ens.Flags))
	spec.left = (*C.int32_t)(put(a, ens.Left))
	spec.right = (*C.int32_t)(put(a, ens.Right))
	spec.cat_set = (*C.int32_t)(put(a, ens.CatSet))
	spec.leaf_value = (*C.double)(put(a, ens.LeafValue))
	if len(ens.CatStart) > 0 {
		spec.num_cat_sets = C.int32_t(len(ens.CatStart) - 1)
	}
	spec.cat_start = (*C.int32_t)(put(a, ens.CatStart))
	spec.cat_bits = (*C.uint32_t)(put(a, ens.CatBits))
	spec.linear_weights = (*C.double)(put(a, ens.LinearWeights))
	spec.linear_bias = (*C.double)(put(a, ens.LinearBias))

	var (
		h      *C.pd_ensemble
		errbuf [errBufLen]C.char
	)
	if rc := C.pd_ensemble_new(&spec, &h, &errbuf[0], errBufLen); rc != C.PD_OK {
		return nil, fmt.Errorf("C++ core: %s", C.GoString(&errbuf[0]))
	}
	return &cScorer{h: h, nfeat: ens.NumFeatures, nout: ens.NumOutputs, kernel: C.PD_KERNEL_DEFAULT, label: "c/" + C.GoString(C.pd_kernel_name())}, nil
}

// predictF64 crosses into C once for the whole slice of rows. The core reads rows and
// writes out only during the call and keeps neither.
func (s *cScorer) predictF64(rows []float64, nrows int, out []float64) error {
	if nrows == 0 {
		return nil
	}
	var errbuf [errBufLen]C.char
	var rp *C.double
	if len(rows) > 0 {
		rp = (*C.double)(unsafe.Pointer(&rows[0]))
	}
	rc := C.pd_predict_f64(s.h, s.kernel, rp, C.size_t(nrows), C.size_t(s.nfeat),
		(*C.double)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &errbuf[0], errBufLen)
	if rc != C.PD_OK {
		return s.err(rc, &errbuf)
	}
	return nil
}

// predictF32 is predictF64 for float32 rows.
func (s *cScorer) predictF32(rows []float32, nrows int, out []float64) error {
	if nrows == 0 {
		return nil
	}
	var errbuf [errBufLen]C.char
	var rp *C.float
	if len(rows) > 0 {
		rp = (*C.float)(unsafe.Pointer(&rows[0]))
	}
	rc := C.pd_predict_f32(s.h, s.kernel, rp, C.size_t(nrows), C.size_t(s.nfeat),
		(*C.double)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &errbuf[0], errBufLen)
	if rc != C.PD_OK {
		return s.err(rc, &errbuf)
	}
	return nil
}

// startBackground starts the core's background threads (the first start in the process
// chooses their number) and returns the CPU priority they run at.
func startBackground(threads int) (string, bool) {
	if C.pd_background_start(C.int(threads)) == 0 {
		return "", false
	}
	return C.GoString(C.pd_background_priority()), true
}

// pauseBackground stops (or lets) the background threads start new batches; for tests.
func pauseBackground(paused bool) {
	p := C.int(0)
	if paused {
		p = 1
	}
	C.pd_background_pause(p)
}

// predictF64Background is predictF64 on a background thread (csrc/background.cc); wait > 0
// withdraws the batch if no thread started it in that time (ErrBackgroundTimeout). It
// returns the thread CPU time the batch took.
func (s *cScorer) predictF64Background(rows []float64, nrows int, out []float64, wait time.Duration) (time.Duration, error) {
	if nrows == 0 {
		return 0, nil
	}
	var (
		errbuf [errBufLen]C.char
		cpu    C.int64_t
		rp     *C.double
	)
	if len(rows) > 0 {
		rp = (*C.double)(unsafe.Pointer(&rows[0]))
	}
	rc := C.pd_predict_f64_background(s.h, s.kernel, rp, C.size_t(nrows), C.size_t(s.nfeat),
		(*C.double)(unsafe.Pointer(&out[0])), C.size_t(len(out)), C.int64_t(max(wait, 0)), &cpu, &errbuf[0], errBufLen)
	if rc != C.PD_OK {
		return 0, s.bgErr(rc, &errbuf)
	}
	return time.Duration(cpu), nil
}

// predictF32Background is predictF64Background for float32 rows.
func (s *cScorer) predictF32Background(rows []float32, nrows int, out []float64, wait time.Duration) (time.Duration, error) {
	if nrows == 0 {
		return 0, nil
	}
	var (
		errbuf [errBufLen]C.char
		cpu    C.int64_t
		rp     *C.float
	)
	if len(rows) > 0 {
		rp = (*C.float)(unsafe.Pointer(&rows[0]))
	}
	rc := C.pd_predict_f32_background(s.h, s.kernel, rp, C.size_t(nrows), C.size_t(s.nfeat),
		(*C.double)(unsafe.Pointer(&out[0])), C.size_t(len(out)), C.int64_t(max(wait, 0)), &cpu, &errbuf[0], errBufLen)
	if rc != C.PD_OK {
		return 0, s.bgErr(rc, &errbuf)
	}
	return time.Duration(cpu), nil
}

func (s *cScorer) bgErr(rc C.int, buf *[errBufLen]C.char) error {
	err := s.err(rc, buf)
	if rc == C.PD_ERR_DEADLINE {
		return fmt.Errorf("%w: %w", ErrBackgroundTimeout, err)
	}
	return err
}

// err copies the message out of buf (C.GoString would make buf escape to the heap on the
// success path too).
func (s *cScorer) err(rc C.int, buf *[errBufLen]C.char) error {
	b := (*[errBufLen]byte)(unsafe.Pointer(buf))
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return fmt.Errorf("C++ core: %s (status %d)", string(b[:n]), int(rc))
}

func (s *cScorer) close() {
	C.pd_ensemble_free(s.h)
	s.h = nil
}

// name is "c/" plus the kernel the CPU chose ("c/avx2"); PREDICTD_KERNEL overrides it.
func (s *cScorer) name() string { return s.label }
