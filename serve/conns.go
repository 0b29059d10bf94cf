package serve

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connLimitListener caps the open connections of a listener: a connection
// accepted beyond the cap is answered 503 and closed, and counted.
type connLimitListener struct {
	net.Listener
	max      int64
	m        *metrics
	refusing atomic.Int64 // refusals in progress
}

// maxRefusing bounds the goroutines writing 503s; beyond it, excess
// connections are closed without an answer.
const maxRefusing = 64

// refusalBody is the answer to a connection over the cap.
const refusalBody = `{"error":{"message":"too many open connections; retry later","type":"server_error","param":null,"code":"too_many_connections"}}` + "\n"

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.m.connsOpen.Add(1) <= l.max {
			return &limitedConn{Conn: c, m: l.m}, nil
		}
		l.m.connsOpen.Add(-1)
		l.m.connsRejected.Add(1)
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer l.refusing.Add(-1)
			refuse(c)
		}()
	}
}

// refuse reads the request's headers (up to 8 KiB, for up to a second),
// writes the 503, then reads (and drops) what the client still sends until
// that second is over, so that closing does not reset the connection
// before the client has read the answer. Answering before the request
// arrives would make an HTTP client that reuses connections see an
// unsolicited response instead of an answer.
func refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	var buf [8 << 10]byte
	for n := 0; n < len(buf); {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil || bytes.Contains(buf[max(0, n-m-3):n], []byte("\r\n\r\n")) {
			break
		}
	}
	if _, err := fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(refusalBody), refusalBody); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.CopyN(io.Discard, c, 64<<10)
}

// limitedConn gives its slot back when closed (once, however often Close
// is called).
type limitedConn struct {
	net.Conn
	m    *metrics
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.m.connsOpen.Add(-1) })
	return c.Conn.Close()
}

// bodyReaders tracks the request bodies being read so that a drain can cut
// them off instead of waiting for a stalled client.
type bodyReaders struct {
	mu       sync.Mutex
	m        map[*http.ResponseController]struct{}
	draining bool
}

// start registers rc as reading a body; when draining it cuts the read at
// once.
func (b *bodyReaders) start(rc *http.ResponseController, deadline time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.draining {
		deadline = time.Now()
	} else {
		if b.m == nil {
			b.m = map[*http.ResponseController]struct{}{}
		}
		b.m[rc] = struct{}{}
	}
	rc.SetReadDeadline(deadline)
}

// finish unregisters rc; after a complete body (ok) it lifts the read
// deadline so that a long response stream lives on.
func (b *bodyReaders) finish(rc *http.ResponseController, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, rc)
	if ok && !b.draining {
		rc.SetReadDeadline(time.Time{})
	}
}

// cut ends every body read in progress and every later one.
func (b *bodyReaders) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draining = true
	for rc := range b.m {
		rc.SetReadDeadline(time.Now())
	}
}
