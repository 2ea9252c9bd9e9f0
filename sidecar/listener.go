package sidecar

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
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

// An answer the client can read before the connection closes.
//
// fasthttp rejects a body over --max-body-bytes (and a malformed request) from its
// headers, writes the error and closes the connection, the body's bytes unread. A
// socket closed with unread bytes is reset (RFC 1122 4.2.2.13; a Unix socket's peer
// gets EPIPE), and a client still writing the body, as every client that sends one in
// one go is, sees "connection reset" or "broken pipe" where the 413 was, often before
// it has read the 413. So a connection closed after such an error closes as web
// servers close it (Apache's and nginx's lingering close): its write side shuts first,
// so the answer is followed by a FIN, then what the client still sends is read and
// dropped until it closes its end, lingerMaxBytes are read or lingerTime passes, and
// only then does the socket close.
//
// fasthttp writes the answer and closes the connection itself, after the error
// handler returns. So the handler (lingerer.hold) takes a second descriptor of the
// socket, which keeps it open when fasthttp closes its own; when fasthttp reports the
// connection closed (Server.ConnState), the answer is written and the linger runs on
// its own goroutine over the second descriptor. The worker is free at once, and the
// bounds keep a client that sends oversized bodies on purpose from holding more than
// a socket and an idle goroutine for a second per connection. Requests that are
// answered normally cost one atomic load per connection state change.
const (
	lingerTime     = time.Second
	lingerMaxBytes = 64 << 20
)

// lingerer holds the connections to close with a linger, between the error handler
// and fasthttp's close.
type lingerer struct {
	held  atomic.Int64
	conns sync.Map // net.Conn as fasthttp has it → net.Conn, a second descriptor
}

// hold marks c to close with a linger. Where the descriptor cannot be had (out of
// descriptors, a connection type without one), c closes at once as before.
func (l *lingerer) hold(c net.Conn) {
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return
	}
	f, err := fc.File()
	if err != nil {
		return
	}
	dup, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	if _, loaded := l.conns.LoadOrStore(c, dup); loaded {
		dup.Close()
		return
	}
	l.held.Add(1)
}

// connState is the servers' Server.ConnState: on a held connection's close, the
// linger starts.
func (l *lingerer) connState(c net.Conn, st fasthttp.ConnState) {
	if l.held.Load() == 0 || (st != fasthttp.StateClosed && st != fasthttp.StateHijacked) {
		return
	}
	if dup, ok := l.conns.LoadAndDelete(c); ok {
		l.held.Add(-1)
		go linger(dup.(net.Conn))
	}
}

func linger(c net.Conn) {
	defer c.Close()
	if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	io.Copy(io.Discard, io.LimitReader(c, lingerMaxBytes))
}
