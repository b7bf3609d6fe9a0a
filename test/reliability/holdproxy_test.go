package reliability

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// holdProxy is a TCP proxy between Kafka clients and the broker that can
// hold one request back and release it later: the KAFKA-17754 fault. When
// armed for an API key, the next request with that key (on any connection)
// is not forwarded; the client's connection stays open but gets no answer,
// so the client times out, gives up on it and moves on. After hold the
// request is forwarded to the broker anyway, on the connection it came on,
// even if the client has closed its side by then: exactly a request that a
// network delayed past the client's timeout. Requests behind it on the same
// connection wait with it (TCP keeps order).
type holdProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	armKey  int16 // -1: nothing armed
	hold    time.Duration
	held    int // requests held so far
	late    int // held requests released after their client had hung up
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
	onHeld  func(key int16)
	release chan struct{} // closed by Close: held requests are released at once
	// maxVersion is the highest version forwarded per API key: which
	// protocol the clients really spoke.
	maxVersion map[int16]int16
}

func newHoldProxy(target string) (*holdProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &holdProxy{ln: ln, target: target, armKey: -1, release: make(chan struct{}), maxVersion: map[int16]int16{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *holdProxy) Addr() string { return p.ln.Addr().String() }

// Arm holds the next request with API key for d.
func (p *holdProxy) Arm(key int16, d time.Duration) {
	p.mu.Lock()
	p.armKey, p.hold = key, d
	p.mu.Unlock()
}

// Late reports how many held requests reached the broker after the client
// had closed the connection they came on: truly late requests.
func (p *holdProxy) Late() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.late
}

// MaxVersion reports the highest version of key forwarded so far (-1: none).
func (p *holdProxy) MaxVersion(key int16) int16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.maxVersion[key]; ok {
		return v
	}
	return -1
}

// Held reports how many requests were held so far.
func (p *holdProxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// SetTarget changes the broker address for new connections.
func (p *holdProxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *holdProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.release)
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

func (p *holdProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // broker → client: plain copy
			defer p.wg.Done()
			io.Copy(c, up)
			c.Close()
		}()
		go func() { // client → broker: request by request
			defer p.wg.Done()
			p.forward(c, up)
		}()
	}
}

// forward copies whole requests from c to up, holding an armed one.
func (p *holdProxy) forward(c, up net.Conn) {
	defer up.Close()
	br := bufio.NewReader(c)
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			// The client is gone. Keep the broker's side open a moment so a
			// request released just now is handled like any other, not cut
			// short by the connection closing behind it.
			select {
			case <-time.After(500 * time.Millisecond):
			case <-p.release:
			}
			return
		}
		size := binary.BigEndian.Uint32(hdr)
		if size < 4 || size > 100<<20 {
			return
		}
		req := make([]byte, 4+int(size))
		copy(req, hdr)
		if _, err := io.ReadFull(br, req[8:]); err != nil {
			return
		}
		key := int16(binary.BigEndian.Uint16(hdr[4:]))
		version := int16(binary.BigEndian.Uint16(hdr[6:]))
		p.mu.Lock()
		if v, ok := p.maxVersion[key]; !ok || version > v {
			p.maxVersion[key] = version
		}
		hold := time.Duration(0)
		if key == p.armKey {
			hold, p.armKey = p.hold, -1
			p.held++
		}
		onHeld := p.onHeld
		p.mu.Unlock()
		if hold > 0 {
			if onHeld != nil {
				onHeld(key)
			}
			select {
			case <-time.After(hold):
			case <-p.release:
			}
			if clientGone(c, br) {
				p.mu.Lock()
				p.late++
				p.mu.Unlock()
			}
		}
		if _, err := up.Write(req); err != nil {
			return
		}
	}
}

// clientGone reports whether the client closed c (read through br): a
// peek that would block times out at once, pipelined requests behind the
// held one are buffered and stay unread, and only a closed connection
// reads EOF.
func clientGone(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	_, err := br.Peek(1)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}
