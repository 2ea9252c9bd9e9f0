package sidecar

import "time"

// Exchange describes one successful prediction for Config.AfterResponse. It and every
// slice it holds are valid only during the call.
type Exchange struct {
	Model, Version string
	// RequestID is the request's X-Request-Id header (nil when absent).
	RequestID []byte
	Raw       bool      // raw margins were returned
	Scores    []float64 // NumRows × Width, row-major
	Width     int
	Start     time.Time
	Duration  time.Duration

	req    *request
	rows64 []float64
	rows32 []float32
	ncols  int
}

// NumFeatures returns the number of columns of each row (the model's features).
func (e *Exchange) NumFeatures() int { return e.ncols }

// Rows32 returns the float32 matrix the model scored, for float32 models (nil for the
// others).
func (e *Exchange) Rows32() []float32 { return e.rows32 }

// NumRows returns the number of rows scored.
func (e *Exchange) NumRows() int { return e.req.numRows() }

// ID returns candidate i's id (nil in the dense rows form).
func (e *Exchange) ID(i int) []byte {
	if e.req.dense {
		return nil
	}
	return e.req.id(i)
}

// Row copies row i of the scored matrix (the model's feature order) into dst[:0].
func (e *Exchange) Row(dst []float64, i int) []float64 {
	dst = dst[:0]
	if e.rows32 != nil {
		for _, x := range e.rows32[i*e.ncols : (i+1)*e.ncols] {
			dst = append(dst, float64(x))
		}
		return dst
	}
	return append(dst, e.rows64[i*e.ncols:(i+1)*e.ncols]...)
}

// Rows64 returns the float64 matrix as assembled (before any float32 narrowing). With
// the dense rows form it is the request's own rows.
func (e *Exchange) Rows64() []float64 { return e.rows64 }
