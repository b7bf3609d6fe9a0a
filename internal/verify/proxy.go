package verify

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FaultKind is what a Proxy does to one Kafka request and its response.
type FaultKind int

const (
	// FaultDropResponse forwards the request, lets the broker answer, then
	// discards the answer and resets the client's connection: the request
	// took effect but the client cannot know. This is the lost
	// acknowledgement that turns a retrying producer into a duplicating one.
	FaultDropResponse FaultKind = iota + 1
	// FaultDelayResponse holds the broker's answer for Delay before passing
	// it on (and with it every later answer on the connection, which Kafka
	// orders per connection): an acknowledgement that times out.
	FaultDelayResponse
	// FaultReset resets the client's connection (TCP RST) instead of
	// forwarding the request: the request definitely did not reach the broker.
	FaultReset
	// FaultHold holds the request for Delay before forwarding it, even if
	// the client has given up and closed the connection meanwhile: a request
	// that lands late, after the client moved on (the KAFKA-17754 shape).
	FaultHold
	// FaultDuplicateProduce is a test hook that emulates a broken broker: after
	// a Produce request is acknowledged, the proxy sends it again on a fresh
	// connection with its producer id, epoch and sequence removed, so the
	// broker cannot recognise the retry and appends the records a second
	// time. A correct broker plus this hook must make a checker report
	// duplicates; it exists to prove the checkers can fail.
	FaultDuplicateProduce
	// FaultDropFetchedBatch is a test hook that emulates a broker losing an
	// acknowledged record on the read path: the first Fetch response (of
	// a request selected by the rule) that carries at least two record
	// batches for one partition loses the first of them. The client moves
	// past it to the next batch and never asks for it again. Responses
	// with fewer batches pass untouched and the rule stays armed.
	FaultDropFetchedBatch
)

func (k FaultKind) String() string {
	switch k {
	case FaultDropResponse:
		return "drop-response"
	case FaultDelayResponse:
		return "delay-response"
	case FaultReset:
		return "reset"
	case FaultHold:
		return "hold"
	case FaultDuplicateProduce:
		return "duplicate-produce"
	case FaultDropFetchedBatch:
		return "drop-fetched-batch"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Kafka API keys the rules of a Proxy commonly select.
const (
	APIProduce int16 = 0
	APIFetch   int16 = 1
	APIAnyKey  int16 = -1
)

// Rule arms a fault for the next requests that match it.
type Rule struct {
	Kind FaultKind
	// APIKey selects requests by Kafka API key (APIProduce, 26 for EndTxn,
	// …); APIAnyKey matches every request.
	APIKey int16
	// Delay is the hold or response delay of FaultHold and FaultDelayResponse.
	Delay time.Duration
	// Count is how many matching requests the rule affects before it
	// disarms itself; 0 affects every match until Clear.
	Count int
}

// Proxy is a TCP proxy between Kafka clients and one broker address that
// understands Kafka framing (an int32 size before every request and
// response; responses in request order on a connection), so that it can act
// on one request and its own response rather than on a byte stream:
// exactly the precision a lost acknowledgement needs, and the one a
// byte-level proxy such as toxiproxy lacks (docs/reliability.md).
//
// Without rules it forwards everything, optionally adding a fixed latency.
// All methods are safe for concurrent use.
type Proxy struct {
	upstream string
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	ln       net.Listener
	// OnFault, if set before traffic starts, is called with a description
	// of every fault the proxy applies (a nemesis's fault log).
	OnFault func(desc string)

	mu      sync.Mutex
	rules   []*Rule
	latency time.Duration
	conns   map[*proxyConn]struct{}
	applied map[FaultKind]int
	closed  bool
	done    chan struct{} // closed by Close: cuts every sleep short

	wg sync.WaitGroup // the accept loop and every connection's goroutines
}

// NewProxy listens on a fresh 127.0.0.1 port and forwards to upstream.
func NewProxy(upstream string) (*Proxy, error) {
	return NewProxyDial(upstream, nil)
}

// NewProxyDial is NewProxy with the connections to upstream made by dial
// (nil: plain TCP). A dial that returns a TLS connection makes the proxy
// the TLS client: its own clients speak plaintext Kafka to it on loopback,
// which it can read frame by frame, and the broker sees TLS.
func NewProxyDial(upstream string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, dial: dial, ln: ln, conns: map[*proxyConn]struct{}{}, applied: map[FaultKind]int{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// dialUpstream opens a connection to the broker.
func (p *Proxy) dialUpstream() (net.Conn, error) {
	if p.dial == nil {
		return net.DialTimeout("tcp", p.upstream, 5*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.dial(ctx, "tcp", p.upstream)
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream is the broker address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Add arms r.
func (p *Proxy) Add(r Rule) {
	p.mu.Lock()
	p.rules = append(p.rules, &r)
	p.mu.Unlock()
}

// SetLatency delays every request by d before forwarding it (0 = none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Clear disarms every rule and removes the latency: the heal. Requests
// already held or delayed still finish their delay.
func (p *Proxy) Clear() {
	p.mu.Lock()
	p.rules, p.latency = nil, 0
	p.mu.Unlock()
}

// Armed reports how many rules are still armed.
func (p *Proxy) Armed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rules)
}

// ResetAll resets every open client connection, as a network blip would.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.resetClient()
	}
	p.note(FaultReset, fmt.Sprintf("reset %d open connections", len(cs)))
}

// Applied returns how many times each fault was applied.
func (p *Proxy) Applied() map[FaultKind]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[FaultKind]int, len(p.applied))
	for k, v := range p.applied {
		out[k] = v
	}
	return out
}

// Close stops listening, closes every connection and waits for all of the
// proxy's goroutines, including late replays and held requests.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range cs {
		c.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) note(k FaultKind, desc string) {
	p.mu.Lock()
	p.applied[k]++
	p.mu.Unlock()
	if p.OnFault != nil {
		p.OnFault(k.String() + ": " + desc)
	}
}

// match takes one use of the first rule that matches apiKey.
func (p *Proxy) match(apiKey int16) (Rule, time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.rules {
		if r.APIKey != APIAnyKey && r.APIKey != apiKey {
			continue
		}
		out := *r
		if r.Count > 0 {
			r.Count--
			if r.Count == 0 {
				p.rules = append(p.rules[:i:i], p.rules[i+1:]...)
			}
		}
		return out, p.latency, true
	}
	return Rule{}, p.latency, false
}

// sleep waits d or until the proxy closes; false means it closed.
func (p *Proxy) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := p.dialUpstream()
		if err != nil {
			resetConn(c) // the broker is down: the client sees what it would see
			continue
		}
		pc := &proxyConn{p: p, client: c, up: u, pending: make(chan pending, 1024)}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns[pc] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go pc.requests()
		go pc.responses()
	}
}

// pending is a request forwarded upstream whose response is still due.
type pending struct {
	apiKey  int16
	version int16
	corr    int32
	rule    Rule
	armed   bool
	frame   []byte // the request, for FaultDuplicateProduce
}

// proxyConn is one client connection and its upstream connection. The
// requests goroutine owns reading from the client and writing upstream; the
// responses goroutine owns the reverse direction. They share the FIFO of
// pending requests, which is what pairs a response with its request.
type proxyConn struct {
	p       *Proxy
	client  net.Conn
	up      net.Conn
	pending chan pending

	once sync.Once
}

func (c *proxyConn) requests() {
	defer c.p.wg.Done()
	defer close(c.pending) // lets responses() finish once the broker answered what was sent
	r := bufio.NewReader(c.client)
	for {
		frame, err := readFrame(r)
		if err != nil {
			// The client is gone. Keep the upstream connection until the
			// broker has answered what it was sent (responses() closes it):
			// a request is not withdrawn because its sender hung up.
			return
		}
		if len(frame) < 12 {
			c.close()
			return
		}
		key := int16(binary.BigEndian.Uint16(frame[4:]))
		corr := int32(binary.BigEndian.Uint32(frame[8:]))
		rule, latency, armed := c.p.match(key)
		if !c.p.sleep(latency) {
			return
		}
		if armed {
			switch rule.Kind {
			case FaultReset:
				c.p.note(FaultReset, fmt.Sprintf("api %d correlation %d not forwarded; client connection reset", key, corr))
				c.resetClient()
				return
			case FaultHold:
				c.p.note(FaultHold, fmt.Sprintf("api %d correlation %d held for %v", key, corr, rule.Delay))
				if !c.p.sleep(rule.Delay) {
					return
				}
			}
		}
		pd := pending{apiKey: key, version: int16(binary.BigEndian.Uint16(frame[6:])), corr: corr, rule: rule, armed: armed}
		if armed && rule.Kind == FaultDuplicateProduce && key == APIProduce {
			pd.frame = frame
		}
		if key != APIProduce || produceAcks(frame) != 0 {
			c.pending <- pd // acks=0 produce requests get no response
		}
		if _, err := c.up.Write(frame); err != nil {
			c.resetClient()
			return
		}
	}
}

func (c *proxyConn) responses() {
	defer c.p.wg.Done()
	defer c.close()
	r := bufio.NewReader(c.up)
	for pd := range c.pending {
		frame, err := readFrame(r)
		if err != nil {
			c.resetClient()
			for range c.pending { // let requests() finish
			}
			return
		}
		if !pd.armed {
			if _, err := c.client.Write(frame); err != nil {
				continue // the client left; keep collecting the broker's answers
			}
			continue
		}
		switch pd.rule.Kind {
		case FaultDropResponse:
			c.p.note(FaultDropResponse, fmt.Sprintf("api %d correlation %d: response dropped after the broker answered; client connection reset", pd.apiKey, pd.corr))
			c.resetClient()
			continue
		case FaultDelayResponse:
			c.p.note(FaultDelayResponse, fmt.Sprintf("api %d correlation %d: response delayed %v", pd.apiKey, pd.corr, pd.rule.Delay))
			if !c.p.sleep(pd.rule.Delay) {
				return
			}
		case FaultDropFetchedBatch:
			if out, desc, ok := dropFirstBatch(frame, pd.version); pd.apiKey == APIFetch && ok {
				c.p.note(FaultDropFetchedBatch, fmt.Sprintf("correlation %d: %s", pd.corr, desc))
				frame = out
			} else {
				c.p.Add(Rule{Kind: FaultDropFetchedBatch, APIKey: pd.rule.APIKey, Count: 1}) // not applicable: stay armed
			}
		}
		_, _ = c.client.Write(frame)
		if pd.frame != nil {
			c.p.wg.Add(1)
			go c.p.replayWithoutProducer(pd.frame, pd.corr)
		}
	}
}

// resetClient aborts the client side with a TCP RST (SO_LINGER 0), which is
// what a crashed peer or a middlebox reset looks like to the client.
func (c *proxyConn) resetClient() { resetConn(c.client) }

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.up.Close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// readFrame reads one size-prefixed Kafka frame, prefix included.
func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 0 || n > 256<<20 {
		return nil, fmt.Errorf("verify: proxy: frame size %d", n)
	}
	frame := make([]byte, 4+int(n))
	copy(frame, size[:])
	_, err := io.ReadFull(r, frame[4:])
	return frame, err
}

// replayWithoutProducer is FaultDuplicateProduce's second send.
func (p *Proxy) replayWithoutProducer(frame []byte, corr int32) {
	defer p.wg.Done()
	dup, err := stripProducer(frame)
	if err != nil {
		p.note(FaultDuplicateProduce, fmt.Sprintf("correlation %d: not replayed: %v", corr, err))
		return
	}
	u, err := p.dialUpstream()
	if err != nil {
		p.note(FaultDuplicateProduce, fmt.Sprintf("correlation %d: not replayed: %v", corr, err))
		return
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err = u.Write(dup); err == nil {
		_, err = readFrame(u) // wait for the broker's answer so the append happened
	}
	if err != nil {
		p.note(FaultDuplicateProduce, fmt.Sprintf("correlation %d: replay failed: %v", corr, err))
		return
	}
	p.note(FaultDuplicateProduce, fmt.Sprintf("correlation %d: produce replayed without producer id", corr))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// stripProducer rewrites a Produce request frame so that every batch in it
// is non-idempotent and non-transactional (producer id -1, epoch -1,
// sequence -1), with its CRC recomputed, and the request carries no
// transactional id.
func stripProducer(frame []byte) ([]byte, error) {
	body := frame[4:]
	version := int16(binary.BigEndian.Uint16(body[2:]))
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(version)
	pos, err := headerEnd(body, req.IsFlexible())
	if err != nil {
		return nil, err
	}
	if err := req.ReadFrom(body[pos:]); err != nil {
		return nil, err
	}
	req.TransactionID = nil
	for i := range req.Topics {
		for j := range req.Topics[i].Partitions {
			recs := append([]byte(nil), req.Topics[i].Partitions[j].Records...)
			for b := recs; len(b) >= 61; {
				size := 12 + int(int32(binary.BigEndian.Uint32(b[8:])))
				if size < 61 || size > len(b) {
					return nil, errors.New("bad batch length")
				}
				batch := b[:size]
				attrs := binary.BigEndian.Uint16(batch[21:])
				binary.BigEndian.PutUint16(batch[21:], attrs&^0x10) // not transactional
				binary.BigEndian.PutUint64(batch[43:], ^uint64(0))  // producer id -1
				binary.BigEndian.PutUint16(batch[51:], ^uint16(0))  // epoch -1
				binary.BigEndian.PutUint32(batch[53:], ^uint32(0))  // base sequence -1
				binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], castagnoli))
				b = b[size:]
			}
			req.Topics[i].Partitions[j].Records = recs
		}
	}
	out := append([]byte{0, 0, 0, 0}, body[:pos]...)
	out = req.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, nil
}

// dropFirstBatch removes the first record batch of the first partition of
// a Fetch response frame (request version v) that holds at least two, and
// re-encodes the response.
func dropFirstBatch(frame []byte, v int16) ([]byte, string, bool) {
	body := frame[4:]
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(v)
	pos := 4 // correlation id; flexible responses add a tag buffer
	if resp.IsFlexible() {
		var err error
		if pos, err = skipTags(body, pos); err != nil {
			return nil, "", false
		}
	}
	if pos > len(body) || resp.ReadFrom(body[pos:]) != nil {
		return nil, "", false
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			part := &resp.Topics[i].Partitions[j]
			b := part.RecordBatches
			if len(b) < 12 {
				continue
			}
			first := 12 + int(int32(binary.BigEndian.Uint32(b[8:])))
			if first <= 12 || first+12 > len(b) {
				continue // a single (or truncated) batch: dropping it would only be fetched again
			}
			desc := fmt.Sprintf("topic %s partition %d: batch at offset %d dropped", resp.Topics[i].Topic, part.Partition, int64(binary.BigEndian.Uint64(b)))
			part.RecordBatches = b[first:]
			out := append([]byte{0, 0, 0, 0}, body[:pos]...)
			out = resp.AppendTo(out)
			binary.BigEndian.PutUint32(out, uint32(len(out)-4))
			return out, desc, true
		}
	}
	return nil, "", false
}

// headerEnd returns where the body of a request frame's payload (frame
// without its size prefix) starts: after key, version, correlation id,
// client id and, for flexible versions, the header's tag buffer.
func headerEnd(body []byte, flexible bool) (int, error) {
	pos := 8
	if len(body) < pos+2 {
		return 0, errors.New("short header")
	}
	if n := int16(binary.BigEndian.Uint16(body[pos:])); n > 0 {
		pos += int(n)
	}
	pos += 2
	if flexible {
		var err error
		if pos, err = skipTags(body, pos); err != nil {
			return 0, err
		}
	}
	if pos > len(body) {
		return 0, errors.New("short header")
	}
	return pos, nil
}

// produceAcks returns the acks field of a Produce request frame, or -1 if it
// cannot be read (then a response is expected, the safe assumption).
func produceAcks(frame []byte) int16 {
	body := frame[4:]
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(int16(binary.BigEndian.Uint16(body[2:])))
	pos, err := headerEnd(body, req.IsFlexible())
	if err != nil {
		return -1
	}
	if err := req.ReadFrom(body[pos:]); err != nil {
		return -1
	}
	return req.Acks
}

// skipTags skips a tagged-field buffer starting at b[pos].
func skipTags(b []byte, pos int) (int, error) {
	n, k := binary.Uvarint(b[pos:])
	if k <= 0 {
		return 0, errors.New("bad tag count")
	}
	pos += k
	for range n {
		_, k = binary.Uvarint(b[pos:])
		if k <= 0 {
			return 0, errors.New("bad tag")
		}
		pos += k
		size, k := binary.Uvarint(b[pos:])
		if k <= 0 || pos+k+int(size) > len(b) {
			return 0, errors.New("bad tag size")
		}
		pos += k + int(size)
	}
	return pos, nil
}
