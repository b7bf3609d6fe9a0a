package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fault is what an injected fault does to one request (fault tests and the
// lab use it to reproduce lost acknowledgements and dead connections the way
// they happen in production, at the broker rather than in a proxy).
type Fault struct {
	// Delay holds the request this long before it is handled; the
	// connection's later requests wait behind it, as on a slow broker.
	Delay time.Duration
	// Drop closes the connection without handling the request: the client
	// sees a dead connection and the request had no effect.
	Drop bool
	// LoseResponse handles the request normally (for acks=all, until the
	// write is fsynced) and then closes the connection instead of answering:
	// the write happened but its acknowledgement is lost, so the client
	// retries something that already succeeded.
	LoseResponse bool
}

// FaultFunc decides the fault for one request; returning the zero Fault
// serves it normally.
type FaultFunc func(req kmsg.Request) Fault

// SetFault installs f for requests of api key (nil removes it). It applies
// to requests read after it returns, on every connection.
func (s *Server) SetFault(key int16, f FaultFunc) {
	if key < 0 || int(key) >= len(faultTable{}) {
		return
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	var next faultTable
	if cur := s.faults.Load(); cur != nil {
		next = *cur
	}
	next[key] = f
	s.faults.Store(&next)
}

type faultTable [256]FaultFunc

// fault returns the fault for a request (the zero Fault when none is set).
func (s *Server) fault(key int16, req kmsg.Request) Fault {
	t := s.faults.Load()
	if t == nil || key < 0 || int(key) >= len(t) || t[key] == nil {
		return Fault{}
	}
	return t[key](req)
}
