//go:build cgo && xgboost

package engine

// XGBoost's own C predictor, linked only with -tags xgboost (Debian libxgboost-dev), as
// the peer in the core's benchmarks (core_timing_test.go). Test files cannot use cgo, so
// the wrapper lives here; nothing else in predictd uses it.

/*
#cgo LDFLAGS: -lxgboost
#include <stdlib.h>
#include <xgboost/c_api.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// xgbPeerAvailable reports whether this build links XGBoost's predictor.
const xgbPeerAvailable = true

// xgbPeer is a loaded XGBoost booster plus a batch of float32 rows in C memory, scored
// with XGBoosterPredictFromDense (in-place prediction) and nthread=1. Not safe for
// concurrent use.
type xgbPeer struct {
	h     C.BoosterHandle
	nout  int
	ncols int
	rows  *C.float
	cfg   *C.char
	iface map[int]*C.char // __array_interface__ JSON per batch size, built once
}

func xgbLastError() error { return errors.New(C.GoString(C.XGBGetLastError())) }

// newXGBPeer loads modelPath (XGBoost JSON) and copies rows (row-major, ncols wide) into C
// memory: XGBoost receives their address inside a JSON string, so they cannot be Go memory.
func newXGBPeer(modelPath string, nout int, rows []float32, ncols int) (*xgbPeer, error) {
	x := &xgbPeer{nout: nout, ncols: ncols, iface: map[int]*C.char{}}
	if C.XGBoosterCreate(nil, 0, &x.h) != 0 {
		return nil, xgbLastError()
	}
	p := C.CString(modelPath)
	defer C.free(unsafe.Pointer(p))
	k, v := C.CString("nthread"), C.CString("1")
	defer C.free(unsafe.Pointer(k))
	defer C.free(unsafe.Pointer(v))
	if C.XGBoosterLoadModel(x.h, p) != 0 || C.XGBoosterSetParam(x.h, k, v) != 0 {
		err := xgbLastError()
		C.XGBoosterFree(x.h)
		return nil, err
	}
	x.rows = (*C.float)(C.malloc(C.size_t(len(rows)*4 + 4)))
	copy(unsafe.Slice((*float32)(unsafe.Pointer(x.rows)), len(rows)), rows)
	// Margins (type 1), all trees, NaN as missing.
	x.cfg = C.CString(`{"type":1,"training":false,"iteration_begin":0,"iteration_end":0,"strict_shape":false,"missing":NaN,"cache_id":0}`)
	return x, nil
}

// predict scores the first nrows rows as margins into out.
func (x *xgbPeer) predict(nrows int, out []float64) error {
	iface, ok := x.iface[nrows]
	if !ok {
		iface = C.CString(fmt.Sprintf(`{"data":[%d,true],"shape":[%d,%d],"typestr":"<f4","version":3}`,
			uintptr(unsafe.Pointer(x.rows)), nrows, x.ncols))
		x.iface[nrows] = iface
	}
	var (
		shape *C.bst_ulong
		dim   C.bst_ulong
		res   *C.float
	)
	if C.XGBoosterPredictFromDense(x.h, iface, x.cfg, nil, &shape, &dim, &res) != 0 {
		return xgbLastError()
	}
	for i, v := range unsafe.Slice((*float32)(unsafe.Pointer(res)), nrows*x.nout) {
		out[i] = float64(v)
	}
	return nil
}

func (x *xgbPeer) close() {
	C.XGBoosterFree(x.h)
	C.free(unsafe.Pointer(x.rows))
	C.free(unsafe.Pointer(x.cfg))
	for _, p := range x.iface {
		C.free(unsafe.Pointer(p))
	}
}
