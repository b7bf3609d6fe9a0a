package verify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Flood is a burst of idle connections to a broker (MixConnFlood): the
// pressure on its connection limit and file descriptors that an unthrottled
// client fleet, or an attacker, puts on it. A broker must refuse what it
// cannot afford at accept, and keep serving the clients it admitted and its
// own logs.
type Flood struct {
	Addr string
	// Opened counts connections the dial completed; Held, those the broker
	// kept; Refused, those it closed at once (a connection limit);
	// DialErrors, dials that failed (a full accept queue, no descriptors
	// left on this side).
	Opened, Held, Refused, DialErrors int

	conns []net.Conn
}

// floodSettle is how long a flood waits for the broker to close the
// connections it refuses: a refusal comes at accept, within milliseconds.
const floodSettle = 300 * time.Millisecond

// OpenFlood opens n connections to addr, then sorts them into held and
// refused: a refused connection reads EOF or a reset at once, a held one
// reads nothing. It keeps the held ones open until Close.
func OpenFlood(addr string, n int) *Flood {
	f := &Flood{Addr: addr}
	var opened []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			f.DialErrors++
			continue
		}
		opened = append(opened, c)
	}
	f.Opened = len(opened)
	// Each connection waits at most floodSettle for its refusal, all at
	// once (a read past its deadline does not look at the socket, so one
	// shared deadline would not do).
	held := make([]bool, len(opened))
	var wg sync.WaitGroup
	for i, c := range opened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(floodSettle))
			var one [1]byte
			_, err := c.Read(one[:])
			// EOF or a reset is a refusal; a broker sends nothing
			// unasked, so a byte is no admission either.
			held[i] = errors.Is(err, os.ErrDeadlineExceeded)
		}()
	}
	wg.Wait()
	for i, c := range opened {
		if !held[i] {
			f.Refused++
			c.Close()
			continue
		}
		_ = c.SetReadDeadline(time.Time{})
		f.conns = append(f.conns, c)
	}
	f.Held = len(f.conns)
	return f
}

// Close closes the held connections.
func (f *Flood) Close() {
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *Flood) String() string {
	return fmt.Sprintf("%d connections to %s: %d held, %d refused at accept, %d failed", f.Opened+f.DialErrors, f.Addr, f.Held, f.Refused, f.DialErrors)
}
