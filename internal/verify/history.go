// Package verify is idem's verification harness, a Go re-implementation of the
// parts of Jepsen's method that a single-node broker needs (docs/reliability.md
// §1.1, §7.1): clients write unique values and log every operation as
// invoke/ok/fail/info in a History; a Nemesis kills and restarts the broker
// process on a seeded schedule with quiet periods; offline checkers
// (CheckSet, CheckOrder) then decide from the history alone whether anything
// acknowledged was lost, anything unexpected appeared, or anything was
// duplicated or reordered.
//
// The history is the evidence: a failing run saves it, with the seed, through
// SaveOnFailure so that it can be read and replayed.
package verify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Type is the outcome class of an operation, as in Jepsen.
type Type string

const (
	// Invoke marks the start of an operation.
	Invoke Type = "invoke"
	// OK means the operation definitely happened (e.g. the broker acknowledged it).
	OK Type = "ok"
	// Fail means the operation definitely did not happen. Use it only when the
	// protocol guarantees non-application; otherwise use Info.
	Fail Type = "fail"
	// Info means the outcome is unknown (timeout, connection lost, broker
	// killed): the value may or may not exist, but never twice.
	Info Type = "info"
)

// Operation names (the f field).
const (
	FSend  = "send"  // value: Record (Partition/Offset -1 until acknowledged)
	FPoll  = "poll"  // value: []Record read, on the ok completion
	FKill  = "kill"  // nemesis: value is a description string
	FStart = "start" // nemesis: value is a description string
)

// NemesisProcess is the proc number of operations recorded by the nemesis.
const NemesisProcess = -1

// Record is one value at a position of a partitioned log.
type Record struct {
	Value     string `json:"v"`
	Partition int32  `json:"p"`
	Offset    int64  `json:"o"`
}

// Op is one line of a history. Value depends on F: a Record for FSend, a
// []Record for FPoll, a string (or nil) otherwise; UnmarshalJSON restores
// these types so that a saved history can be checked again.
type Op struct {
	Process int           `json:"proc"`
	Type    Type          `json:"type"`
	F       string        `json:"f"`
	Value   any           `json:"value,omitempty"`
	Time    time.Duration `json:"t"` // since the recorder started, in nanoseconds
	Error   string        `json:"error,omitempty"`
}

// UnmarshalJSON decodes Value into the type that F implies.
func (o *Op) UnmarshalJSON(b []byte) error {
	type plain Op
	var aux struct {
		plain
		Value json.RawMessage `json:"value,omitempty"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*o = Op(aux.plain)
	o.Value = nil
	if len(aux.Value) == 0 || string(aux.Value) == "null" {
		return nil
	}
	switch o.F {
	case FSend:
		var r Record
		if err := json.Unmarshal(aux.Value, &r); err != nil {
			return fmt.Errorf("verify: %s op value: %w", o.F, err)
		}
		o.Value = r
	case FPoll:
		var rs []Record
		if err := json.Unmarshal(aux.Value, &rs); err != nil {
			return fmt.Errorf("verify: %s op value: %w", o.F, err)
		}
		o.Value = rs
	default:
		var v any
		if err := json.Unmarshal(aux.Value, &v); err != nil {
			return err
		}
		o.Value = v
	}
	return nil
}

// History is a sequence of operations in the order they were recorded.
type History []Op

// WriteJSONL writes one JSON object per line.
func (h History) WriteJSONL(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range h {
		if err := enc.Encode(&h[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadJSONL reads a history written by WriteJSONL.
func ReadJSONL(r io.Reader) (History, error) {
	var h History
	dec := json.NewDecoder(r)
	for {
		var op Op
		if err := dec.Decode(&op); err == io.EOF {
			return h, nil
		} else if err != nil {
			return h, fmt.Errorf("verify: history line %d: %w", len(h)+1, err)
		}
		h = append(h, op)
	}
}

// Recorder collects a History from concurrent clients. Times are taken from
// one monotonic start so that operations of different processes can be
// ordered.
type Recorder struct {
	start time.Time

	mu     sync.Mutex
	ops    History
	stream *json.Encoder // optional: every op also written as it happens
	err    error         // first stream write error
}

// NewRecorder starts an empty history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// NewStreamingRecorder is NewRecorder that also writes each operation to w
// as a JSON line the moment it is recorded, so that a long soak run that
// dies (or is killed by a CI timeout) still leaves its history behind.
func NewStreamingRecorder(w io.Writer) *Recorder {
	return &Recorder{start: time.Now(), stream: json.NewEncoder(w)}
}

// Err returns the first error writing the stream, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Add appends op, stamping its time under the lock so that times never
// decrease along the history.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	op.Time = time.Since(r.start)
	r.ops = append(r.ops, op)
	if r.stream != nil && r.err == nil {
		r.err = r.stream.Encode(&op)
	}
	r.mu.Unlock()
}

// Invoke records the start of operation f by proc.
func (r *Recorder) Invoke(proc int, f string, v any) {
	r.Add(Op{Process: proc, Type: Invoke, F: f, Value: v})
}

// Complete records the end of an operation; err, if any, is kept as text.
func (r *Recorder) Complete(proc int, t Type, f string, v any, err error) {
	op := Op{Process: proc, Type: t, F: f, Value: v}
	if err != nil {
		op.Error = err.Error()
	}
	r.Add(op)
}

// History returns a copy of the operations recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(History(nil), r.ops...)
}

// Value returns the unique value for the seq-th write of producer proc. Values
// are never reused, so any repeat in the log is a real duplicate.
func Value(proc, seq int) string { return strconv.Itoa(proc) + "-" + strconv.Itoa(seq) }

// ParseValue is the inverse of Value.
func ParseValue(v string) (proc, seq int, ok bool) {
	a, b, found := strings.Cut(v, "-")
	if !found {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(a)
	s, err2 := strconv.Atoi(b)
	return p, s, err1 == nil && err2 == nil
}
