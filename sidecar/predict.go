package sidecar

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/predictd/predictd/sidecar/admission"
	"github.com/predictd/predictd/sidecar/tracing"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// predict serves POST /v1/predict with a pooled request. See the package comment for
// the request path.
func (s *Server) predict(ctx *fasthttp.RequestCtx) {
	req := getRequest()
	s.predictWith(ctx, req)
	// Not reached when predictWith panics (handle recovers): the request's buffers may
	// be mid-update then, so they are dropped rather than pooled.
	putRequest(req)
}

// prediction is one request's state across the steps of the request path. It lives on
// predictWith's stack and holds views of the request, valid until the handler returns.
type prediction struct {
	ctx      *fasthttp.RequestCtx
	req      *request
	start    time.Time
	deadline time.Time // zero: none
	proto    bool      // protobuf, else JSON
	tctx     context.Context
	span     trace.Span
	slot     *admission.Bulkhead // the admission slot (nil: none held), released in step 8
	v        *version            // the resolved version, referenced until step 8
	m64      []float64           // the assembled matrix (step 4)
	m32      []float32           // m64 narrowed for a float32 model, else nil
	raw      bool                // raw margins: the request's output, else the manifest's
	out      []float64           // the scores, rows × width (step 5)
	width    int
}

// predictWith runs the steps of docs/architecture.md's request path, one function each;
// the first error ends the request and is answered by failPrediction.
func (s *Server) predictWith(ctx *fasthttp.RequestCtx, req *request) {
	p := prediction{ctx: ctx, req: req, start: time.Now()}
	p.tctx, p.span = s.startSpan(ctx)
	defer p.span.End()
	defer p.release()
	err := s.runSteps(&p)
	if err != nil {
		s.failPrediction(&p, err)
	}
	s.live.record(&p, err) // the portal's live view (live.go)
}

// runSteps runs steps 1 to 7 of the request path; step 8 is p.release.
func (s *Server) runSteps(p *prediction) error {
	var err error
	if p.proto, err = requestIsProto(p.ctx); err != nil {
		return err
	}
	if p.deadline, err = s.deadline(p.ctx, p.start); err != nil {
		return err
	}
	if err := s.decode(p); err != nil { // 1, 2 (and admission, when the body names its model first)
		return err
	}
	if err := s.resolve(p); err != nil { // 3 (and admission)
		return err
	}
	if err := s.assemble(p); err != nil { // 4
		return err
	}
	if err := s.score(p); err != nil { // 5
		return err
	}
	s.encode(p)        // 6
	s.count(p)         // 7
	s.afterResponse(p) // 7
	return nil
}

// startSpan starts the request's span, continuing the caller's trace when tracing is on.
func (s *Server) startSpan(ctx *fasthttp.RequestCtx) (context.Context, trace.Span) {
	tctx := bg
	if s.tp.Enabled() {
		tctx = s.tp.Extract(tctx, headerCarrier{&ctx.Request.Header})
	}
	return s.tp.Predict(tctx, "", "")
}

// decode is steps 1 and 2: the body is decoded into p.req, the decoders checking the
// limits as they append. Admission comes first when the body names its model first
// (peekModel): a flooded model's rejections then cost no decoding, and its bulkhead
// bounds the decoding of its admitted requests too. Otherwise admission follows
// decoding (resolve).
func (s *Server) decode(p *prediction) error {
	// The body is ours until the handler returns; the JSON decoder unescapes in place.
	// fasthttp has read it whole (bounded by --max-body-bytes) before the handler runs:
	// the byte budget counts it from here, with what decoding it may build.
	body := p.ctx.Request.Body()
	p.req.budget = s.bytes
	if err := p.req.take(int64(len(body))*(1+decodeReserve), "its body and decoding"); err != nil {
		return err
	}
	peeked, end := peekModel(body, p.proto)
	var err error
	if p.slot, err = s.prod.admitEarly(peeked, p.deadline); err != nil {
		return err
	}
	// A body that names its model and version first is resolved now, and its candidates
	// are decoded into the matrix (decode_direct.go). An unknown model or version is
	// left to resolve, which reports it after any decoding error, as for other bodies.
	if ver, ok := peekVersion(body, end, p.proto); peeked != nil && ok {
		if v, err := s.reg.acquire(peeked, ver); err == nil {
			p.v = v
			p.req.beginDirect(v, peeked, ver, s.cfg.MaxCells)
		}
	}
	dspan := s.tp.Decode(p.tctx)
	lim := decodeLimits{rows: s.cfg.MaxCandidates, cells: s.cfg.MaxCells}
	if p.proto {
		err = decodeProto(p.req, body, lim)
	} else {
		err = decodeJSON(p.req, body, lim)
	}
	tracing.EndWithError(dspan, err)
	if p.v != nil && !p.req.dir.on() { // decoded again on the generic path
		p.v.release()
		p.v = nil
	}
	if err == nil {
		// Settle the reservation on what decoding built: return what it did not use, or
		// take what it used beyond it.
		err = p.req.settle()
	}
	if err != nil && p.v != nil {
		// A request that fails here is counted as the generic path counts it: before
		// any version was resolved.
		p.v.release()
		p.v = nil
		p.req.dir.reset()
	}
	return err
}

// resolve is step 3: the version the request names (unless decode resolved it: the
// body named it first), referenced until release, and its
// model's admission slot when decode did not take it: for a body that did not name its
// model first, or named another model than the decoded one (a later duplicate model
// field wins).
func (s *Server) resolve(p *prediction) error {
	var err error
	if p.v == nil { // else resolved before decoding (decode)
		if p.v, err = s.reg.acquire(p.req.model, p.req.version); err != nil {
			return err
		}
	}
	v := p.v
	if s.tp.Enabled() {
		p.span.SetAttributes(tracing.AttrModel.String(v.model), tracing.AttrModelVersion.String(v.version),
			tracing.AttrRows.Int(p.req.numRows()))
	}
	if p.slot == nil || p.slot.Model() != v.model {
		if p.slot != nil {
			p.slot.Release()
			p.slot = nil
		}
		p.slot, err = s.prod.admit(v, p.deadline)
	}
	return err
}

// assemble is step 4 (assemble.go): the matrix, the feature store's columns, the
// request's features, then the float32 narrowing for a float32 model.
func (s *Server) assemble(p *prediction) error {
	v, req := p.v, p.req
	if err := req.take(req.matrixBytes(v), "its matrix and scores"); err != nil {
		return err
	}
	m64, err := req.matrix(v, s.cfg.MaxCells)
	if err != nil {
		return err
	}
	if v.binding != nil {
		q := StoreQuery{req: req, NRows: req.numRows(), NCols: v.nfeat, F64: m64}
		fspan := s.tp.FeaturesFetch(p.tctx, v.binding.Source())
		fctx, cancel := context.WithDeadline(p.tctx, p.deadline)
		err = v.binding.Fill(fctx, &q)
		cancel()
		tracing.EndWithError(fspan, err)
		if err != nil {
			return storeError(err)
		}
		// The store keeps the deadline itself (degraded answers --features-reserve
		// before it): the time it spent does not make the rest of the request a 504.
		if grace := time.Now().Add(s.cfg.StoreGrace); !p.deadline.IsZero() && p.deadline.Before(grace) {
			p.deadline = grace
		}
	}
	if err := req.apply(v, m64, p.deadline); err != nil {
		return err
	}
	if req.labels {
		if err := req.resolveLabels(v, m64); err != nil {
			return err
		}
	}
	p.m64, p.m32 = m64, req.narrow(v, m64)
	return nil
}

// score is step 5 (score.go): the request's output mode, then the model over the
// matrix, on the background threads when the version's cost estimate says so.
func (s *Server) score(p *prediction) error {
	v, req := p.v, p.req
	p.raw = v.raw
	switch req.output {
	case outputRaw:
		p.raw = true
	case outputTransformed:
		p.raw = false
	}
	sspan := s.tp.Score(p.tctx, v.info.Backend, req.numRows())
	out, width, cpu, err := req.score(v, p.m64, p.m32, p.raw, p.deadline, s.cfg.BackgroundAfter)
	if cpu >= 0 {
		v.counts.recordBackground(cpu)
		if s.tp.Enabled() {
			sspan.SetAttributes(tracing.AttrScoreBackground.Bool(true))
		}
	}
	tracing.EndWithError(sspan, err)
	p.out, p.width = out, width
	return err
}

// encode is step 6 (encode.go): the response, appended into the request's pooled
// buffer, which is then swapped into the fasthttp response.
func (s *Server) encode(p *prediction) {
	v, req := p.v, p.req
	espan := s.tp.Encode(p.tctx)
	resp := response{model: v.model, version: v.version, req: req, out: p.out, nrows: req.numRows(), width: p.width}
	if p.proto {
		req.resp = appendProtoResponse(req.resp[:0], &resp)
		p.ctx.SetContentType(contentTypeProto)
	} else {
		req.resp = appendJSONResponse(req.resp[:0], &resp)
		p.ctx.SetContentType(contentTypeJSON)
	}
	// Hand the encoded body to fasthttp without a copy; keep its old buffer for the pool.
	req.resp = p.ctx.Response.SwapBody(req.resp)
	espan.End()
}

// count is the first half of step 7: the request's metrics.
func (s *Server) count(p *prediction) {
	p.v.counts.recordRequest(p.req.numRows(), time.Since(p.start), len(p.req.degraded) > 0)
}

// afterResponse is the second half of step 7: the version's shadows and prediction log
// (attach.go, after), then Config.AfterResponse. All of them copy what they keep.
func (s *Server) afterResponse(p *prediction) {
	v := p.v
	x := Exchange{Model: v.model, Version: v.version, RequestID: p.ctx.Request.Header.Peek("X-Request-Id"),
		req: p.req, rows64: p.m64, rows32: p.m32, ncols: v.nfeat, Raw: p.raw, Scores: p.out, Width: p.width,
		Start: p.start, Duration: time.Since(p.start)}
	s.prod.after(v, &x)
	if s.cfg.AfterResponse != nil {
		xc := x // x stays on the stack when no hook is set
		s.cfg.AfterResponse(&xc)
	}
}

// release is step 8: the admission slot, then the version reference. predict returns
// the request to its pool after it.
func (p *prediction) release() {
	if p.slot != nil {
		p.slot.Release()
	}
	p.req.releaseBytes()
	if p.v != nil {
		p.v.release()
	}
}

// failPrediction answers the request with err (fail) and records it on the span.
func (s *Server) failPrediction(p *prediction, err error) {
	s.fail(p.ctx, p.v, err)
	if s.tp.Enabled() {
		p.span.RecordError(err)
		p.span.SetStatus(codes.Error, err.Error())
	}
}

// headerCarrier reads W3C trace-context headers from a fasthttp request for
// tracing.Provider.Extract.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

const (
	contentTypeJSON  = "application/json"
	contentTypeProto = "application/x-protobuf"
)

// requestIsProto reads Content-Type: protobuf, or JSON. JSON is also accepted when the
// type is absent, text/plain or application/x-www-form-urlencoded (what curl -d sends),
// so the curl examples work without -H. Media types compare without regard to case
// (RFC 9110 8.3.1). A body with a Content-Encoding (gzip, say) is refused, by name: a
// sidecar on the same host gains nothing from compression, and reading the compressed
// bytes as JSON or protobuf would only give a puzzling parse error.
func requestIsProto(ctx *fasthttp.RequestCtx) (bool, error) {
	if enc := ctx.Request.Header.ContentEncoding(); len(enc) > 0 && !strings.EqualFold(strings.TrimSpace(string(enc)), "identity") {
		return false, fmt.Errorf("%w: Content-Encoding %s (send the body uncompressed)", errMediaType, quoteName(enc))
	}
	ct := ctx.Request.Header.ContentType()
	if i := strings.IndexByte(string(ct), ';'); i >= 0 {
		ct = ct[:i]
	}
	t := strings.TrimSpace(string(ct))
	for _, m := range [...]string{"", contentTypeJSON, "application/x-www-form-urlencoded", "text/plain"} {
		if strings.EqualFold(t, m) {
			return false, nil
		}
	}
	for _, m := range [...]string{contentTypeProto, "application/protobuf", "application/vnd.google.protobuf"} {
		if strings.EqualFold(t, m) {
			return true, nil
		}
	}
	return false, fmt.Errorf("%w %s (send application/json or application/x-protobuf)", errMediaType, quoteName(ct))
}

// deadline reads X-Deadline-Ms, else applies the default.
func (s *Server) deadline(ctx *fasthttp.RequestCtx, start time.Time) (time.Time, error) {
	h := ctx.Request.Header.Peek("X-Deadline-Ms")
	if len(h) == 0 {
		if s.cfg.DefaultDeadline < 0 {
			return time.Time{}, nil
		}
		return start.Add(s.cfg.DefaultDeadline), nil
	}
	ms, err := strconv.ParseUint(string(h), 10, 32)
	if err != nil || ms == 0 || ms > maxDeadlineHeaderMilli {
		return time.Time{}, badRequest("X-Deadline-Ms %q: want milliseconds, 1 to %d", h, maxDeadlineHeaderMilli)
	}
	return start.Add(time.Duration(ms) * time.Millisecond), nil
}
