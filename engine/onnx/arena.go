package onnx

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"
)

// elemKind is the element type of a tensor buffer.
type elemKind uint8

const (
	kindF32 elemKind = iota
	kindF64
	kindI64
	kindI32
	kindF16 // IEEE half precision, stored as its bits (uint16)
	kindBool
)

func (k elemKind) size() int {
	switch k {
	case kindF64, kindI64:
		return 8
	case kindF16:
		return 2
	case kindBool:
		return 1
	}
	return 4
}

// kinds maps ONNX element types to the buffer kinds predictd feeds and reads, with the
// dtype names of onnx.inputs.
var kinds = map[ort.TensorElementDataType]struct {
	kind elemKind
	name string
}{
	ort.TensorElementDataTypeFloat:   {kindF32, dtypeFloat32},
	ort.TensorElementDataTypeDouble:  {kindF64, dtypeFloat64},
	ort.TensorElementDataTypeFloat16: {kindF16, dtypeFloat16},
	ort.TensorElementDataTypeInt64:   {kindI64, dtypeInt64},
	ort.TensorElementDataTypeInt32:   {kindI32, dtypeInt32},
	ort.TensorElementDataTypeBool:    {kindBool, dtypeBool},
}

// cbuf is a tensor buffer in C memory (malloc), so ONNX Runtime never holds a pointer into
// Go memory, and the tensor over it for the last row count used. It grows, never shrinks,
// and is freed by release. A cbuf is used by one call at a time.
type cbuf struct {
	kind  elemKind
	row   []int64 // the tensor's shape after the batch dimension
	width int     // elements per row: the product of row
	p     unsafe.Pointer
	size  int // bytes allocated at p
	t     ort.Value
	n     int // rows of t
}

// prepare makes b.t a tensor of n rows over b's memory, reusing the previous tensor when
// n is unchanged (the common case: a service sends the same number of candidates).
func (b *cbuf) prepare(n int) error {
	if b.t != nil && b.n == n {
		return nil
	}
	b.dropTensor()
	need := n * b.width * b.kind.size()
	if need > b.size {
		// Grow at least 2x so a slowly rising batch size does not reallocate every call.
		size := max(need, 2*b.size)
		p := C.malloc(C.size_t(size))
		if p == nil {
			return fmt.Errorf("onnx: out of memory allocating a %d-byte tensor buffer", size)
		}
		C.free(b.p)
		b.p, b.size = p, size
	}
	shape := make(ort.Shape, 1+len(b.row))
	shape[0] = int64(n)
	copy(shape[1:], b.row)
	elems := n * b.width
	var err error
	switch b.kind {
	case kindF32:
		b.t, err = ort.NewTensor(shape, unsafe.Slice((*float32)(b.p), elems))
	case kindF64:
		b.t, err = ort.NewTensor(shape, unsafe.Slice((*float64)(b.p), elems))
	case kindI64:
		b.t, err = ort.NewTensor(shape, unsafe.Slice((*int64)(b.p), elems))
	case kindI32:
		b.t, err = ort.NewTensor(shape, unsafe.Slice((*int32)(b.p), elems))
	case kindBool:
		b.t, err = ort.NewTensor(shape, unsafe.Slice((*bool)(b.p), elems))
	case kindF16:
		b.t, err = ort.NewCustomDataTensor(shape, unsafe.Slice((*byte)(b.p), elems*2), ort.TensorElementDataTypeFloat16)
	}
	if err != nil {
		b.t = nil
		return fmt.Errorf("onnx: creating a %v tensor: %w", shape, err)
	}
	b.n = n
	return nil
}

// The views below cover the first n rows of the buffer; n must not exceed the last
// prepare's.
func (b *cbuf) f32(n int) []float32 { return unsafe.Slice((*float32)(b.p), n*b.width) }
func (b *cbuf) f64(n int) []float64 { return unsafe.Slice((*float64)(b.p), n*b.width) }
func (b *cbuf) i64(n int) []int64   { return unsafe.Slice((*int64)(b.p), n*b.width) }
func (b *cbuf) i32(n int) []int32   { return unsafe.Slice((*int32)(b.p), n*b.width) }
func (b *cbuf) u16(n int) []uint16  { return unsafe.Slice((*uint16)(b.p), n*b.width) }
func (b *cbuf) bools(n int) []bool  { return unsafe.Slice((*bool)(b.p), n*b.width) }

// at returns element i of the first n rows as a float64 (bool: 0 or 1).
func (b *cbuf) at(n, i int) float64 {
	switch b.kind {
	case kindF32:
		return float64(b.f32(n)[i])
	case kindF64:
		return b.f64(n)[i]
	case kindI64:
		return float64(b.i64(n)[i])
	case kindI32:
		return float64(b.i32(n)[i])
	case kindF16:
		return float64(float16.Frombits(b.u16(n)[i]).Float32())
	case kindBool:
		if b.bools(n)[i] {
			return 1
		}
	}
	return 0
}

// zero clears rows [off, off+n) (all-zero bytes: 0, 0.0, false).
func (b *cbuf) zero(off, n int) {
	sz := b.width * b.kind.size()
	clear(unsafe.Slice((*byte)(b.p), (off+n)*sz)[off*sz:])
}

func (b *cbuf) dropTensor() {
	if b.t != nil {
		b.t.Destroy()
		b.t, b.n = nil, 0
	}
}

func (b *cbuf) release() {
	b.dropTensor()
	C.free(b.p)
	b.p, b.size = nil, 0
}

// arena holds the input and output buffers of one Run.
type arena struct {
	in   []cbuf
	out  cbuf
	ins  []ort.Value // Run's argument slices, kept to avoid allocating them per call
	outs []ort.Value
	// dyn holds the scores of the last run (row-major, NumOutputs per row) when the
	// output's size is not known before the run (a ZipMap sequence, a tensor whose width
	// the graph leaves open): ONNX Runtime allocates that output and run copies it here.
	dyn []float64
}

// prepare readies every input and the output for n rows and fills ins/outs.
func (a *arena) prepare(n int) error {
	for i := range a.in {
		if err := a.in[i].prepare(n); err != nil {
			return err
		}
		a.ins[i] = a.in[i].t
	}
	if a.out.width == 0 { // dynamic output: ONNX Runtime allocates it per run
		a.outs[0] = nil
		return nil
	}
	if err := a.out.prepare(n); err != nil {
		return err
	}
	a.outs[0] = a.out.t
	return nil
}

func (a *arena) release() {
	for i := range a.in {
		a.in[i].release()
	}
	a.out.release()
}

// maxFreeArenas bounds the idle arenas a model keeps; past it, returned arenas are freed.
// The pool only grows to the number of calls that ran at the same time.
const maxFreeArenas = 64

// arenaPool recycles arenas. It is not a sync.Pool: the GC would drop pooled arenas
// without freeing their C memory.
type arenaPool struct {
	mu     sync.Mutex
	free   []*arena
	closed bool
	newFn  func() *arena
}

func (p *arenaPool) get() *arena {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		a := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return a
	}
	p.mu.Unlock()
	return p.newFn()
}

func (p *arenaPool) put(a *arena) {
	p.mu.Lock()
	if p.closed || len(p.free) >= maxFreeArenas {
		p.mu.Unlock()
		a.release()
		return
	}
	p.free = append(p.free, a)
	p.mu.Unlock()
}

// close frees the idle arenas; arenas put after close are freed at once.
func (p *arenaPool) close() {
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	for _, a := range free {
		a.release()
	}
}
