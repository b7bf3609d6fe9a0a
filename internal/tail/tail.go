// Package tail keeps the end of a stream: the last bytes a child process
// wrote to stderr, quoted in the error when it dies (the lab runner of the
// admin API, the scale benchmarks' broker children).
package tail

import "sync"

// Buffer is an io.Writer that keeps the last Max bytes written. Safe for
// concurrent use (os/exec copies a child's output from its own goroutine).
type Buffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// NewBuffer returns a Buffer keeping the last max bytes.
func NewBuffer(max int) *Buffer { return &Buffer{max: max} }

// Write keeps the end of p and what came before it, max bytes in all.
func (t *Buffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (t *Buffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
