package sidecar

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Accept errors a serving process must outlive.
//
// fasthttp's accept loop returns on any accept error that is not a timeout, and Serve
// with it: one burst of connections past the file-descriptor limit (EMFILE) would leave
// the listening socket open, the kernel still completing handshakes into its backlog,
// and no one ever answering them. net/http retries such errors with a backoff; so does
// steadyListener, beneath fasthttp, until the process has descriptors again (idle
// keep-alive connections close after --idle-timeout, finished requests free theirs).

// acceptBackoffMin and acceptBackoffMax bound the wait between failed accepts: the
// first retry is quick, a sustained shortage costs one accept a second.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// transientAccept reports whether an accept error is a shortage that passes: out of
// file descriptors (process or system), of socket buffers or memory, or a connection
// that went away before it was accepted.
func transientAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPROTO, syscall.EPERM, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// steadyListener is a net.Listener whose Accept retries transient errors (above) with
// a backoff instead of returning them. Other errors, a closed listener among them,
// return as before.
type steadyListener struct {
	net.Listener
	log *slog.Logger
	// errs counts transient accept errors (predictd_accept_errors_total); lastLog
	// (unix nanoseconds) limits the warning to one every 10 s per listener.
	errs    *atomic.Int64
	lastLog atomic.Int64
}

func newSteadyListener(ln net.Listener, log *slog.Logger, errs *atomic.Int64) *steadyListener {
	return &steadyListener{Listener: ln, log: log, errs: errs}
}

func (l *steadyListener) Accept() (net.Conn, error) {
	wait := time.Duration(0)
	for {
		c, err := l.Listener.Accept()
		if err == nil || !transientAccept(err) {
			return c, err
		}
		l.errs.Add(1)
		if wait == 0 {
			wait = acceptBackoffMin
		} else {
			wait = min(2*wait, acceptBackoffMax)
		}
		now := time.Now().UnixNano()
		if last := l.lastLog.Load(); now-last > int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
			l.log.Warn("accepting a connection failed; retrying (connections wait in the listen backlog)",
				"addr", l.Addr().String(), "err", err, "retry_in", wait)
		}
		time.Sleep(wait)
	}
}
