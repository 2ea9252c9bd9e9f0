// Package client is the Go client of the predictd sidecar, for ranking services.
//
// A Client keeps a pool of keep-alive connections to one sidecar over TCP or a Unix
// socket and speaks protobuf by default. Every call takes a context: its deadline bounds
// the call and is sent as X-Deadline-Ms, so the sidecar stops work the caller no longer
// waits for. Errors from the sidecar are *Error values carrying its code.
//
//	c, err := client.New("unix:/run/predictd.sock", client.Options{})
//	resp, err := c.Predict(ctx, &predictpb.PredictRequest{Model: "ranker", Candidates: cands})
package client

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/api/wire"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Error codes the sidecar returns (docs/api.md).
const (
	CodeBadRequest        = "bad_request"
	CodeUnknownModel      = "unknown_model"
	CodeUnknownVersion    = "unknown_version"
	CodeUnknownFeature    = "unknown_feature"
	CodeFeatureCount      = "feature_count"
	CodeTooManyCandidates = "too_many_candidates"
	CodeBodyTooLarge      = "body_too_large"
	CodeDeadlineExceeded  = "deadline_exceeded"
	CodeInternal          = "internal"
)

// Error is an error answer from the sidecar.
type Error struct {
	Status  int    // HTTP status
	Code    string // one of the Code* constants
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("predictd: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, context.DeadlineExceeded) true for the sidecar's
// deadline_exceeded answers.
func (e *Error) Is(target error) bool {
	return target == context.DeadlineExceeded && e.Code == CodeDeadlineExceeded
}

// IsCode reports whether err is an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Options configure a Client. Zero fields take the defaults in their comments.
type Options struct {
	// MaxConns caps pooled connections; default 64.
	MaxConns int
	// Timeout bounds a call whose context has no deadline; default 5s.
	Timeout time.Duration
	// JSON sends JSON instead of protobuf (for debugging; protobuf is faster).
	JSON bool
}

// Client is a connection pool to one sidecar. It is safe for concurrent use.
type Client struct {
	hc      *fasthttp.HostClient
	uri     string
	timeout time.Duration
	json    bool
}

// New returns a client for the sidecar at addr: "host:port", "http://host:port" or
// "unix:/path/to/socket". It does not connect until the first call.
func New(addr string, opts Options) (*Client, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	hc := &fasthttp.HostClient{
		MaxConns:                      opts.MaxConns,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		MaxIdleConnDuration:           30 * time.Second,
	}
	c := &Client{hc: hc, timeout: opts.Timeout, json: opts.JSON}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, errors.New("client: unix: address without a path")
		}
		hc.Addr = "predictd"
		hc.Dial = func(string) (net.Conn, error) { return net.Dial("unix", path) }
		c.uri = "http://predictd"
	} else {
		hostport := strings.TrimPrefix(addr, "http://")
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			return nil, fmt.Errorf("client: address %q: want host:port or unix:/path", addr)
		}
		hc.Addr = hostport
		c.uri = "http://" + hostport
	}
	return c, nil
}

// Close closes idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Predict scores a request. The response is a new message the caller owns.
func (c *Client) Predict(ctx context.Context, in *predictpb.PredictRequest) (*predictpb.PredictResponse, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var err error
	var body []byte
	if c.json {
		body, err = requestJSON(req.Body()[:0], in)
	} else {
		body, err = proto.MarshalOptions{}.MarshalAppend(req.Body()[:0], in)
	}
	if err != nil {
		return nil, fmt.Errorf("client: encoding the request: %w", err)
	}
	req.SetBody(body)
	if err := c.do(ctx, req, resp); err != nil {
		return nil, err
	}
	out := &predictpb.PredictResponse{}
	if c.json {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(resp.Body(), out)
	} else {
		err = proto.Unmarshal(resp.Body(), out)
	}
	if err != nil {
		return nil, fmt.Errorf("client: decoding the response: %w", err)
	}
	return out, nil
}

// DenseRequest is a dense-form request for PredictRows.
type DenseRequest struct {
	Model, Version string
	// Rows holds NumRows × NCols values in the model's feature order; NaN is missing.
	Rows  []float64
	NCols int
	// Raw asks for raw margins instead of transformed predictions.
	Raw bool
}

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// PredictRows scores dense rows, the fast path: the request is encoded straight into a
// pooled buffer and the scores are decoded into dst[:0], which is returned (one score per
// row; multi-output models give every output, row-major). A warm client allocates
// nothing per row. It always speaks protobuf.
func (c *Client) PredictRows(ctx context.Context, in DenseRequest, dst []float64) ([]float64, error) {
	if in.NCols <= 0 || len(in.Rows)%in.NCols != 0 {
		return dst, fmt.Errorf("client: %d values do not make rows of %d", len(in.Rows), in.NCols)
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	bp := bufPool.Get().(*[]byte)
	b := appendDense((*bp)[:0], &in)
	req.SetBodyRaw(b)
	err := c.doProto(ctx, req, resp)
	*bp = b
	bufPool.Put(bp)
	if err != nil {
		return dst, err
	}
	return decodeScores(resp.Body(), dst[:0])
}

// appendDense appends in as a protobuf PredictRequest with one packed Row per row, the
// doubles written in place into b grown once. It is about as fast as proto.Marshal of
// the same message (BenchmarkEncodeDense), which would need a Row message per row: this
// keeps PredictRows free of per-row allocations.
func appendDense(b []byte, in *DenseRequest) []byte {
	b = protowire.AppendTag(b, wire.RequestModel, protowire.BytesType)
	b = protowire.AppendString(b, in.Model)
	if in.Version != "" {
		b = protowire.AppendTag(b, wire.RequestVersion, protowire.BytesType)
		b = protowire.AppendString(b, in.Version)
	}
	if in.Raw {
		b = protowire.AppendTag(b, wire.RequestOutput, protowire.BytesType)
		b = protowire.AppendString(b, "raw")
	}
	n := 8 * in.NCols
	// Row{values: packed}: tag, length, then the little-endian doubles.
	rowSize := protowire.SizeTag(wire.RowValues) + protowire.SizeBytes(n)
	b = slices.Grow(b, len(in.Rows)/in.NCols*(protowire.SizeTag(wire.RequestRows)+protowire.SizeBytes(rowSize)))
	for lo := 0; lo < len(in.Rows); lo += in.NCols {
		b = protowire.AppendTag(b, wire.RequestRows, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(rowSize))
		b = protowire.AppendTag(b, wire.RowValues, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		off := len(b)
		b = b[:off+n]
		for j, v := range in.Rows[lo : lo+in.NCols] {
			binary.LittleEndian.PutUint64(b[off+8*j:], math.Float64bits(v))
		}
	}
	return b
}

// decodeScores appends each prediction's scores (or its score) from a PredictResponse.
// It reads only the scores, without a message per prediction: 4× or more faster than
// proto.Unmarshal, and no allocation (BenchmarkDecodeScores).
func decodeScores(b []byte, dst []float64) ([]float64, error) {
	bad := func() ([]float64, error) { return dst, errors.New("client: malformed protobuf response") }
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return bad()
		}
		b = b[n:]
		if num != wire.ResponsePredictions || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return bad()
			}
			b = b[n:]
			continue
		}
		p, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return bad()
		}
		b = b[n:]
		var score float64
		multi := false
		for len(p) > 0 {
			num, typ, n := protowire.ConsumeTag(p)
			if n < 0 {
				return bad()
			}
			p = p[n:]
			switch {
			case num == wire.PredictionScore && typ == protowire.Fixed64Type:
				v, n := protowire.ConsumeFixed64(p)
				if n < 0 {
					return bad()
				}
				score, p = math.Float64frombits(v), p[n:]
			case num == wire.PredictionScores && typ == protowire.BytesType:
				vs, n := protowire.ConsumeBytes(p)
				if n < 0 || len(vs)%8 != 0 {
					return bad()
				}
				p = p[n:]
				multi = true
				for i := 0; i < len(vs); i += 8 {
					dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(vs[i:])))
				}
			case num == wire.PredictionScores && typ == protowire.Fixed64Type:
				// A repeated double may also come unpacked, one fixed64 per value;
				// every protobuf parser accepts both encodings.
				v, n := protowire.ConsumeFixed64(p)
				if n < 0 {
					return bad()
				}
				p = p[n:]
				multi = true
				dst = append(dst, math.Float64frombits(v))
			default:
				if n = protowire.ConsumeFieldValue(num, typ, p); n < 0 {
					return bad()
				}
				p = p[n:]
			}
		}
		if !multi {
			dst = append(dst, score)
		}
	}
	return dst, nil
}

func (c *Client) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if c.json {
		req.Header.SetContentType("application/json")
		return c.send(ctx, req, resp)
	}
	return c.doProto(ctx, req, resp)
}

func (c *Client) doProto(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	req.Header.SetContentType("application/x-protobuf")
	return c.send(ctx, req, resp)
}

func (c *Client) send(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(c.uri + "/v1/predict")
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.timeout)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return context.DeadlineExceeded
	}
	// Round up so the sidecar never gets 0 ms; it answers 504 if it runs out first.
	var ms [20]byte
	req.Header.SetBytesV("X-Deadline-Ms", strconv.AppendInt(ms[:0], int64((left+time.Millisecond-1)/time.Millisecond), 10))
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			return fmt.Errorf("client: %w (%v)", context.DeadlineExceeded, err)
		}
		return fmt.Errorf("client: %w", err)
	}
	if sc := resp.StatusCode(); sc != fasthttp.StatusOK {
		return decodeError(sc, resp.Body())
	}
	return nil
}

func decodeError(status int, body []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		msg := string(body)
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return &Error{Status: status, Code: CodeInternal, Message: "unexpected answer: " + msg}
	}
	return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
}

// requestJSON appends in to dst in the JSON API's shape (features as objects, not the
// protobuf's lists of name/value pairs), written with package wire's JSON rules. "model"
// comes first: the sidecar reads a body's leading model name to admit or reject it
// before decoding the rest (docs/production.md). Names keep the message's order; a
// repeated name is written again, and the sidecar takes the last, as it does for
// protobuf. A feature's values (a vector sent whole) are an array. An unset feature
// value and a NaN row or vector value are null (missing); ±Inf, which
// JSON cannot carry, is an error.
func requestJSON(dst []byte, in *predictpb.PredictRequest) ([]byte, error) {
	b := append(dst, `{"model":`...)
	b = wire.AppendJSONString(b, in.GetModel())
	if v := in.GetVersion(); v != "" {
		b = append(b, `,"version":`...)
		b = wire.AppendJSONString(b, v)
	}
	if o := in.GetOutput(); o != "" {
		b = append(b, `,"output":`...)
		b = wire.AppendJSONString(b, o)
	}
	var err error
	if fs := in.GetContext(); len(fs) > 0 {
		b = append(b, `,"context":`...)
		if b, err = appendJSONFeatures(b, fs); err != nil {
			return b, err
		}
	}
	if ks := in.GetKeys(); len(ks) > 0 {
		b = append(b, `,"keys":`...)
		b = appendJSONKeys(b, ks)
	}
	if cs := in.GetCandidates(); len(cs) > 0 {
		b = append(b, `,"candidates":[`...)
		for i, c := range cs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = wire.AppendJSONString(b, c.GetId())
			b = append(b, `,"features":`...)
			if b, err = appendJSONFeatures(b, c.GetFeatures()); err != nil {
				return b, err
			}
			if ks := c.GetKeys(); len(ks) > 0 {
				b = append(b, `,"keys":`...)
				b = appendJSONKeys(b, ks)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if rows := in.GetRows(); len(rows) > 0 {
		b = append(b, `,"rows":[`...)
		for i, r := range rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			for j, v := range r.GetValues() {
				if j > 0 {
					b = append(b, ',')
				}
				if math.IsInf(v, 0) {
					return b, fmt.Errorf("rows[%d][%d] is %v, which JSON cannot carry", i, j, v)
				}
				b = wire.AppendJSONFloat(b, v)
			}
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func appendJSONFeatures(b []byte, fs []*predictpb.Feature) ([]byte, error) {
	b = append(b, '{')
	for i, f := range fs {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendJSONString(b, f.GetName())
		b = append(b, ':')
		if vs := f.GetValues(); len(vs) > 0 {
			// A vector feature sent whole: an array, NaN as null.
			if f.Value != nil {
				return b, fmt.Errorf("feature %q has both value and values (send a number or a vector, not both)", f.GetName())
			}
			b = append(b, '[')
			for j, v := range vs {
				if j > 0 {
					b = append(b, ',')
				}
				if math.IsInf(v, 0) {
					return b, fmt.Errorf("feature %q[%d] is %v, which JSON cannot carry", f.GetName(), j, v)
				}
				b = wire.AppendJSONFloat(b, v)
			}
			b = append(b, ']')
			continue
		}
		if f.GetLabel() != "" {
			// A category label: a JSON string.
			if f.Value != nil {
				return b, fmt.Errorf("feature %q has both value and label (send one)", f.GetName())
			}
			b = wire.AppendJSONString(b, f.GetLabel())
			continue
		}
		v := math.NaN() // unset: null
		if f.Value != nil {
			v = f.GetValue()
		}
		if math.IsInf(v, 0) {
			return b, fmt.Errorf("feature %q is %v, which JSON cannot carry", f.GetName(), v)
		}
		b = wire.AppendJSONFloat(b, v)
	}
	return append(b, '}'), nil
}

func appendJSONKeys(b []byte, ks []*predictpb.Key) []byte {
	b = append(b, '{')
	for i, k := range ks {
		if i > 0 {
			b = append(b, ',')
		}
		b = wire.AppendJSONString(b, k.GetName())
		b = append(b, ':')
		b = wire.AppendJSONString(b, k.GetValue())
	}
	return append(b, '}')
}
