package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/predictd/predictd/engine"
	"github.com/predictd/predictd/sidecar/admission"
	"github.com/valyala/fasthttp"
)

// Request-path errors beyond decoding; errorStatus maps them to HTTP codes.
var (
	errMediaType         = errors.New("unsupported content type")
	errUnknownFeature    = errors.New("unknown feature")
	errFeatureCount      = errors.New("wrong number of values per row")
	errTooManyCandidates = errors.New("too many candidates")
	errDeadline          = errors.New("deadline exceeded")
	errFeatureStore      = errors.New("feature store")
	// errNotReady: the initial load has not finished, so a model may still appear;
	// 503 with Retry-After, never 404.
	errNotReady = errors.New("not ready: the initial model load is still running")
)

// Errors a Predictor may wrap (with %w) to choose the HTTP status of its failures.
var (
	// ErrBusy: the model cannot take the call now (e.g. a full batching queue); 503 with
	// Retry-After.
	ErrBusy = errors.New("model busy")
	// ErrBadInput: a value of the request cannot be fed to the model (e.g. an id that is
	// not an integer); 400.
	ErrBadInput = errors.New("bad input value")
)

// errorStatus maps an error to its HTTP status and API code.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, errBadRequest):
		return fasthttp.StatusBadRequest, "bad_request"
	case errors.Is(err, errMediaType):
		return fasthttp.StatusUnsupportedMediaType, "unsupported_media_type"
	case errors.Is(err, errNotReady):
		return fasthttp.StatusServiceUnavailable, "not_ready"
	case errors.Is(err, ErrUnknownModel):
		return fasthttp.StatusNotFound, "unknown_model"
	case errors.Is(err, ErrUnknownVersion):
		return fasthttp.StatusNotFound, "unknown_version"
	case errors.Is(err, errUnknownFeature):
		return fasthttp.StatusBadRequest, "unknown_feature"
	case errors.Is(err, errFeatureCount):
		return fasthttp.StatusBadRequest, "feature_count"
	case errors.Is(err, errTooManyCandidates):
		return fasthttp.StatusRequestEntityTooLarge, "too_many_candidates"
	case errors.Is(err, errTooManyCells):
		return fasthttp.StatusRequestEntityTooLarge, "too_many_cells"
	case errors.Is(err, errDeadline):
		return fasthttp.StatusGatewayTimeout, "deadline_exceeded"
	case errors.Is(err, errFeatureStore):
		return fasthttp.StatusServiceUnavailable, "feature_store_unavailable"
	case errors.Is(err, ErrBusy):
		return fasthttp.StatusServiceUnavailable, "busy"
	case errors.Is(err, ErrBadInput):
		return fasthttp.StatusBadRequest, "bad_input"
	case errors.Is(err, admission.ErrOverloaded):
		var oe *admission.OverloadedError
		if errors.As(err, &oe) {
			return oe.Status, "overloaded"
		}
		return fasthttp.StatusServiceUnavailable, "overloaded"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fasthttp.StatusGatewayTimeout, "deadline_exceeded"
	}
	return fasthttp.StatusInternalServerError, "internal"
}

// fail answers a prediction with an error and counts it.
func (s *Server) fail(ctx *fasthttp.RequestCtx, v *version, err error) {
	status, code := s.writeError(ctx, err)
	var oe *admission.OverloadedError
	if errors.As(err, &oe) {
		ctx.Response.Header.Set("Retry-After", oe.RetryAfterHeader())
	} else if errors.Is(err, ErrBusy) || errors.Is(err, errNotReady) {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	switch {
	case v != nil:
		s.met.countError(v.model, v.version, code)
	case oe != nil:
		// Rejected before decoding (admitEarly): the model is known, its version not yet.
		s.met.countError(oe.Model, "", code)
	default:
		s.met.countError("", "", code)
	}
	// Backpressure (admission rejections, a busy model) is expected under load and
	// counted; logging each one would flood the log exactly when it matters.
	if status >= 500 && code != "overloaded" && code != "busy" {
		s.cfg.Logger.Error("prediction failed", "status", status, "err", err)
	}
}

func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) (int, string) {
	status, code := errorStatus(err)
	s.writeErrorCode(ctx, status, code, err.Error())
	return status, code
}

// writeErrorCode writes {"error":{"code":...,"message":...}}. Errors are JSON for every
// request encoding, so they read the same in curl and in logs.
func (s *Server) writeErrorCode(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	b := append(make([]byte, 0, 64+len(msg)), `{"error":{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, strings.ToValidUTF8(msg, "\uFFFD"))
	b = append(b, "}}\n"...)
	ctx.Response.SetBody(b)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetStatusCode(status)
}

// handleConnError answers errors fasthttp meets before the handler: an oversized body,
// a client too slow to send its request, a malformed HTTP request.
func (s *Server) handleConnError(ctx *fasthttp.RequestCtx, err error) {
	// fasthttp's errors quote the bytes they could not parse: the message names the
	// kind of failure only, never the request's bytes (nor fasthttp's internals).
	var (
		status = fasthttp.StatusBadRequest
		code   = "bad_request"
		msg    = "malformed HTTP request: the request line or headers could not be parsed (HTTP/1.1, RFC 9112)"
	)
	var netErr net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code = fasthttp.StatusRequestEntityTooLarge, "body_too_large"
		msg = fmt.Sprintf("request body over %d bytes (--max-body-bytes)", s.cfg.MaxBodyBytes)
	case errors.As(err, &small):
		status, code = fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large"
		msg = "the request line and headers are over 4096 bytes"
	case errors.As(err, &netErr) && netErr.Timeout():
		status, code = fasthttp.StatusRequestTimeout, "request_timeout"
		msg = fmt.Sprintf("the request was not received within %s (--read-timeout)", s.cfg.ReadTimeout)
	}
	s.met.countError("", "", code)
	s.writeErrorCode(ctx, status, code, msg)
	ctx.SetConnectionClose()
	if status != fasthttp.StatusRequestTimeout {
		// Bytes of the request may still be on their way: let the client read this
		// answer before the connection closes (listener.go).
		s.lingers.hold(ctx.Conn())
	}
}

// storeError is the request error for a FeatureBinding.Fill failure: the request's own
// deadline having passed before the store was read is a 504 that says so (the store
// itself answers degraded before the deadline, never this); anything else is the
// store's, 503 feature_store_unavailable.
func storeError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w before the feature store was read: %w (raise X-Deadline-Ms or --default-deadline)", errDeadline, err)
	}
	return fmt.Errorf("%w: %w", errFeatureStore, err)
}

// maxEchoedName bounds a client-sent name (model, version) quoted in an error: a name
// that long is not one any repository holds, and the answer must not grow with it.
const maxEchoedName = 128

// shown quotes a value read from a model file or model.yaml for an error message when
// it is a short, plain token (engine.ClipText), and gives only its length otherwise: an
// error (GET /v1/models, logs) must never carry a file's contents, even where a model
// path is a link to some other file.
func shown(s string) string {
	if engine.ClipText(s) == s {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("(%d bytes, not shown)", len(s))
}

// quoteName quotes a client-sent name for an error message, shortened past
// maxEchoedName bytes to its length.
func quoteName[T string | []byte](name T) string {
	if len(name) > maxEchoedName {
		return fmt.Sprintf("(a name of %d bytes)", len(name))
	}
	return strconv.Quote(string(name))
}
