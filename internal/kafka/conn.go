package kafka

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/security"
)

const (
	// firstChunk is the most a frame read allocates before any body byte has
	// arrived; after that the buffer at most doubles what has arrived, so a
	// lying size prefix costs at most twice the bytes really sent.
	firstChunk = 64 << 10
	// maxNonProduceRequest caps frames of every API but Produce. kmsg allocates
	// decoded arrays by their declared length (bounded by the bytes left, one
	// byte per element), and an element is tens of bytes in memory, so a large
	// garbage frame of another API could cost far more memory than it carries.
	// Legitimate non-produce requests are far smaller than this.
	maxNonProduceRequest = 4 << 20
	// largeFrame is the size above which a non-produce request takes one of
	// maxLargeFrames decoding slots.
	largeFrame     = 256 << 10
	maxLargeFrames = 4
	// minHeader is api_key, api_version, correlation_id and a client_id length.
	minHeader = 10
	// queueDepth bounds responses waiting on a connection; a client pipelining
	// more than this waits for its oldest answers (backpressure, not memory).
	queueDepth = 128
	// writeTimeout bounds one write of responses to a client that stopped
	// reading (connections.max.idle.ms, if shorter, wins).
	writeTimeout = time.Minute
)

// conn is one client connection: a reader (the serve goroutine) and a writer.
type conn struct {
	s  *Server
	nc net.Conn // the socket: deadlines and Close from any goroutine
	// rw is what the reader and writer use: nc, or the TLS connection over
	// it once the handshake is done (before either starts).
	rw       net.Conn
	listener *Listener
	log      *slog.Logger
	info     api.Conn
	// mutedUntil (Unix nanoseconds) is when the reader may read again
	// after a quota throttle (KIP-219: the response goes out at once with
	// its ThrottleMillis, then the channel is muted).
	mutedUntil atomic.Int64
	// connDelay is the connection_creation_rate throttle of this
	// connection: it is closed after waiting that long.
	connDelay time.Duration

	ctx    context.Context // cancelled when the connection dies; aborts Deferred waits
	cancel context.CancelFunc

	queue      chan *pending // reader → writer, in request order
	writerDone chan struct{}
	stopped    atomic.Bool // set by stopReading (server shutdown)
}

// pending is a response on its way to the writer.
type pending struct {
	corr     int32
	key      int16
	version  int16
	resp     kmsg.Response
	deferred *api.Deferred
	raw      []byte // a pre-encoded body (the v0 ApiVersions fallback); resp is nil then
	// bare: raw is a bare SASL token (after a v0 SaslHandshake), written
	// with a size prefix and no correlation id.
	bare  bool
	start time.Time
	lose  bool // injected fault: close the connection instead of writing this response
	// user and clientID name the quota entity (captured by the reader;
	// the writer must not read conn.info).
	user, clientID string
}

func newConn(s *Server, nc net.Conn, l *Listener) *conn {
	id := s.nextID.Add(1)
	ctx, cancel := context.WithCancel(s.ctx)
	remote := addrString(nc.RemoteAddr())
	return &conn{
		s: s, nc: nc, rw: nc, listener: l,
		log: s.log.With("conn", id, "remote", remote),
		info: api.Conn{
			ID: id, RemoteAddr: remote, Principal: security.Anonymous, Host: hostOf(nc.RemoteAddr()),
			Listener: l.Name, AdvertisedHost: l.AdvertisedHost, AdvertisedPort: l.AdvertisedPort,
			SASL: l.newSASLState(),
		},
		ctx:        ctx,
		cancel:     cancel,
		queue:      make(chan *pending, queueDepth),
		writerDone: make(chan struct{}),
	}
}

// stopReading makes the reader stop at its next frame boundary (or now, if it
// is blocked reading); responses already queued are still written.
func (c *conn) stopReading() {
	c.stopped.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
}

// serve runs the reader on the calling goroutine and the writer on a second one,
// and returns once both have finished and the socket is closed.
func (c *conn) serve() {
	if c.connDelay > 0 {
		// Over connection_creation_rate: Kafka holds such a connection for
		// the throttle time, then closes it.
		select {
		case <-time.After(c.connDelay):
		case <-c.ctx.Done():
		}
		c.cancel()
		c.nc.Close()
		c.log.Debug("connection closed: connection_creation_rate quota", "throttled", c.connDelay)
		return
	}
	if err := c.secure(); err != nil {
		c.cancel()
		c.nc.Close()
		c.s.cfg.Metrics.refused("tls")
		if ok, suppressed := c.s.closedBy.allow(); ok {
			c.log.Info("closing connection", "err", err, "similar_closes_not_logged", suppressed)
		}
		return
	}
	go c.writeLoop()
	err := c.readLoop()
	if !c.stopped.Load() && !errors.Is(err, errClosedAfterResponse) {
		// The client is gone or broke the protocol: abort pending long-polls
		// and fsync waits instead of holding the writer until they time out.
		// On a graceful shutdown (stopped) in-flight responses still finish.
		c.cancel()
	}
	close(c.queue)
	<-c.writerDone
	c.cancel()
	c.nc.Close()
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || c.stopped.Load():
		c.log.Debug("connection closed")
	case errors.Is(err, errClosedAfterResponse):
		c.log.Debug("connection closed after its response", "principal", c.info.Principal)
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Debug("closing idle connection")
	default:
		if ok, suppressed := c.s.closedBy.allow(); ok {
			c.log.Info("closing connection", "err", err, "similar_closes_not_logged", suppressed)
		}
	}
}

// readBufferSize is small so that idle connections cost little; frames
// larger than it are read straight into their own buffer.
const readBufferSize = 4 << 10

func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(c.rw, readBufferSize)
	var sizeBuf [4]byte
	for {
		if err := c.waitMuted(); err != nil {
			return err
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		if c.stopped.Load() {
			return nil
		}
		if s := c.info.SASL; s != nil && s.RawTokens {
			p, err := c.rawToken(br)
			if err != nil {
				return err
			}
			if err := c.enqueue(p); err != nil {
				return err
			}
			continue
		}
		if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: truncated size prefix", errFrame)
			}
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		held, err := c.acquireRequestBudget(size)
		if err != nil {
			return err
		}
		frame, err := readFrame(br, size, c.frameLimit(), held > 0)
		if err != nil {
			c.s.releaseRequestBudget(held)
			return err
		}
		p, err := c.handle(frame)
		c.s.releaseRequestBudget(held)
		if err != nil {
			return err
		}
		if p == nil {
			continue // acks=0: no response
		}
		if err := c.enqueue(p); err != nil {
			return err
		}
		if c.info.CloseAfterResponse {
			return errClosedAfterResponse
		}
	}
}

// enqueue hands p to the writer.
func (c *conn) enqueue(p *pending) error {
	select {
	case c.queue <- p:
		return nil
	case <-c.writerDone:
		return errors.New("writer stopped")
	}
}

// acquireRequestBudget takes queued.max.request.bytes budget for a frame of
// size bytes before any of it is read. Frames up to firstChunk need none:
// they are bounded by the connection count.
func (c *conn) acquireRequestBudget(size int32) (int64, error) {
	if c.s.cfg.Budget == nil || size <= firstChunk || size > c.s.cfg.MaxRequestBytes {
		return 0, nil // an oversized frame is refused by readFrame
	}
	n := int64(size)
	waited, err := c.s.cfg.Budget.Acquire(c.ctx, n)
	if waited {
		c.s.cfg.Metrics.waited("request")
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *Server) releaseRequestBudget(n int64) { s.cfg.Budget.Release(n) }

// readFrame reads a frame body of the given declared size, never allocating much
// beyond what has actually arrived, unless budgeted: the frame's size was
// taken from the broker's memory budget (queued.max.request.bytes) before
// reading, which bounds what lying size prefixes can hold all together, so
// the buffer is allocated whole at once instead of grown by doubling (which
// cost twice the frame in allocations and a copy of it: the largest cost of
// a 1 MiB produce request).
func readFrame(r io.Reader, size, maxBytes int32, budgeted bool) ([]byte, error) {
	if size < minHeader {
		return nil, fmt.Errorf("%w: size %d is smaller than a request header", errFrame, size)
	}
	if size > maxBytes {
		return nil, fmt.Errorf("%w: size %d exceeds socket.request.max.bytes %d", errFrame, size, maxBytes)
	}
	n := int(size)
	buf := make([]byte, min(n, firstChunk))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: frame of %d bytes cut short: %v", errFrame, n, err)
	}
	// The API key is now known: frames other than Produce get a tighter cap.
	if key := int16(binary.BigEndian.Uint16(buf)); key != 0 && n > maxNonProduceRequest {
		return nil, fmt.Errorf("%w: size %d too large for api key %d", errFrame, n, key)
	}
	if budgeted && len(buf) < n {
		whole := make([]byte, n)
		copy(whole, buf)
		if _, err := io.ReadFull(r, whole[len(buf):]); err != nil {
			return nil, fmt.Errorf("%w: short frame of %d bytes: %v", errFrame, n, err)
		}
		return whole, nil
	}
	for len(buf) < n {
		have := len(buf)
		grow := min(n-have, have)
		buf = slices.Grow(buf, grow)[:have+grow]
		if _, err := io.ReadFull(r, buf[have:]); err != nil {
			return nil, fmt.Errorf("%w: short frame of %d bytes: %v", errFrame, n, err)
		}
	}
	return buf, nil
}

// handle decodes one frame and runs its handler. It returns the response to
// queue (nil for none) or an error that closes the connection.
func (c *conn) handle(frame []byte) (*pending, error) {
	start := time.Now()
	r := kbin.Reader{Src: frame}
	key, version, corr := r.Int16(), r.Int16(), r.Int32()
	clientID := r.NullableString()
	if !r.Ok() {
		return nil, fmt.Errorf("%w: truncated request header", errFrame)
	}
	h, minV, maxV, ok := api.Lookup(key)
	if !ok {
		return nil, fmt.Errorf("unsupported api key %d (version %d)", key, version)
	}
	if err := c.admitRequest(key); err != nil {
		return nil, err
	}
	if key == 18 && version > maxV {
		// KIP-511: a client newer than us sends ApiVersions at a version we cannot
		// parse; answer in the v0 layout with UNSUPPORTED_VERSION and our table so
		// it can retry at a version we serve.
		return &pending{corr: corr, key: key, version: 0, raw: api.UnsupportedApiVersions().AppendTo(nil), start: start}, nil
	}
	if version < minV || version > maxV {
		return nil, fmt.Errorf("unsupported version %d of api key %d (serving %d..%d)", version, key, minV, maxV)
	}
	req := kmsg.RequestForKey(key)
	if req == nil {
		return nil, fmt.Errorf("no request type for api key %d", key)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&r)
		if !r.Ok() {
			return nil, fmt.Errorf("%w: truncated header tags", errFrame)
		}
	}
	if key == 0 {
		if err := prescanProduce(r.Src, version); err != nil {
			return nil, err
		}
	}
	if len(frame) > largeFrame && key != 0 && key != 11 && key != 14 {
		// Decoding can cost many times a frame's size (see
		// maxNonProduceRequest); only a few large frames are decoded and
		// handled at once, so many connections cannot multiply that.
		// JoinGroup and SyncGroup are exempt: they block until the group's
		// other members arrive, and holding a slot there could stall the
		// very requests they wait for.
		select {
		case c.s.large <- struct{}{}:
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
		defer func() { <-c.s.large }()
	}
	if err := req.ReadFrom(r.Src); err != nil {
		return nil, fmt.Errorf("decoding %s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	if clientID != nil {
		c.info.ClientID = *clientID
	} else {
		c.info.ClientID = ""
	}
	fault := c.s.fault(key, req)
	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
	}
	if fault.Drop {
		return nil, fmt.Errorf("injected fault: dropping %s", kmsg.NameForKey(key))
	}
	handled := time.Now()
	resp, err := c.call(h, req)
	if err != nil {
		return nil, fmt.Errorf("%s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	c.throttleRequest(key, len(frame), time.Since(handled), resp)
	if fault.LoseResponse {
		if resp == nil {
			return nil, fmt.Errorf("injected fault: closing after %s", kmsg.NameForKey(key))
		}
		p := &pending{corr: corr, key: key, version: version, resp: resp, start: start, lose: true}
		if d, ok := resp.(*api.Deferred); ok {
			p.deferred, p.resp = d, d.Response
		}
		return p, nil
	}
	if resp == nil {
		c.s.cfg.Metrics.observe(key, time.Since(start))
		return nil, nil
	}
	p := &pending{corr: corr, key: key, version: version, resp: resp, start: start, user: c.quotaUser(), clientID: c.info.ClientID}
	if d, ok := resp.(*api.Deferred); ok {
		if d.Response == nil || d.Wait == nil {
			return nil, fmt.Errorf("%s: handler returned an incomplete Deferred", kmsg.NameForKey(key))
		}
		p.deferred, p.resp = d, d.Response
	}
	return p, nil
}

// call runs a handler, turning a panic into a closed connection: hostile input
// must never take the broker down. The stack is logged because a panic here is
// always a bug.
func (c *conn) call(h api.Handler, req kmsg.Request) (resp kmsg.Response, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("handler panic", "api", kmsg.NameForKey(req.Key()), "version", req.GetVersion(), "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error: %v", r)
			if c.s.cfg.OnPanic != nil {
				c.s.cfg.OnPanic(r)
			}
		}
	}()
	return h(c.ctx, c.s.cfg.Env, &c.info, req)
}

// writeLoop writes responses in request order, waiting for Deferred ones in turn.
// It flushes only when no further response is ready, so pipelined responses go
// out in one write.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	// out gathers encoded responses until no further one is ready; it is
	// dropped after a large flush, so an idle connection holds no buffer.
	var out []byte
	fail := func(err error) {
		c.log.Debug("writer stopping", "err", err)
		c.cancel()
		c.nc.Close() // unblocks the reader
	}
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		// A client that does not read what it asked for for a minute is
		// gone or hostile; its queued answers must not hold memory longer.
		c.nc.SetWriteDeadline(time.Now().Add(min(c.s.cfg.IdleTimeout, writeTimeout)))
		_, err := c.rw.Write(out)
		if cap(out) > 64<<10 {
			// Do not pin one huge fetch answer's buffer on this
			// connection: give it to the next large answer of any.
			putAnswerBuffer(out)
			out = nil
		} else {
			out = out[:0]
		}
		return err
	}
	for p := range c.queue {
		if p.deferred != nil {
			if err := p.deferred.Wait(c.ctx); err != nil {
				p.deferred.Finish()
				fail(fmt.Errorf("%s: %w", kmsg.NameForKey(p.key), err))
				return
			}
		}
		if p.lose {
			p.deferred.Finish()
			flush() // earlier responses still reach the client
			fail(fmt.Errorf("injected fault: %s response lost", kmsg.NameForKey(p.key)))
			return
		}
		at := len(out)
		if fr, ok := p.resp.(*kmsg.FetchResponse); ok {
			need := fetchResponseSize(fr)
			if len(out) == 0 && cap(out) < need {
				out = takeAnswerBuffer(need)
			} else {
				out = slices.Grow(out, need)
			}
		}
		out = encodeResponse(out, p)
		if p.deferred != nil {
			// The answer is encoded into out: the records it read are
			// garbage from now on, and the memory budget they took stays
			// held for out until it is written, so what a client that does
			// not read holds is counted once, not as records plus copy.
			p.deferred.Response, p.deferred.Wait = nil, nil // Wait's closure holds the answer too
		}
		p.resp = nil
		if p.key == 1 {
			c.throttleFetch(out[at:], p)
		}
		c.s.cfg.Metrics.observe(p.key, time.Since(p.start))
		if len(c.queue) == 0 || len(out) >= 1<<20 {
			err := flush()
			// The answer's data is on the wire (or the connection is
			// dead): give back the memory budget it held.
			p.deferred.Finish()
			if err != nil {
				fail(err)
				return
			}
		} else {
			p.deferred.Finish()
		}
		p.resp, p.deferred = nil, nil
	}
	flush()
}

// answerBuffers recycles the writer buffers of large answers (fetches)
// across connections: a consumer reading at full speed otherwise had every
// byte it read allocated, zeroed and collected once more for the encoded
// answer, the broker's largest allocation after the read itself. Buffers
// idle in the pool are not counted by the memory budget; sync.Pool lets the
// garbage collector take them within two cycles, and none above
// maxPooledAnswer is kept.
var answerBuffers sync.Pool // of *[]byte

const maxPooledAnswer = 16 << 20

// takeAnswerBuffer returns an empty buffer with room for size bytes.
func takeAnswerBuffer(size int) []byte {
	if b, ok := answerBuffers.Get().(*[]byte); ok && cap(*b) >= size {
		return (*b)[:0]
	}
	// A pooled buffer too small for this answer is left to the collector:
	// growing it would copy nothing useful.
	return make([]byte, 0, size)
}

// putAnswerBuffer gives b back once its bytes are on the wire.
func putAnswerBuffer(b []byte) {
	if cap(b) > maxPooledAnswer {
		return
	}
	b = b[:0]
	answerBuffers.Put(&b)
}

// fetchResponseSize is about the encoded size of a Fetch answer: its record
// bytes and a generous allowance for the rest. Growing the writer's buffer
// to it once, before encoding, keeps append from doubling it past the
// answer (a 55 MiB answer would otherwise leave a buffer of up to 110 MiB
// that no memory budget counts).
func fetchResponseSize(r *kmsg.FetchResponse) int {
	n := 64
	for _, t := range r.Topics {
		n += len(t.Topic) + 32
		for _, p := range t.Partitions {
			n += len(p.RecordBatches) + 64 + 24*len(p.AbortedTransactions)
		}
	}
	return n
}

// encodeResponse appends a whole response frame to dst.
func encodeResponse(dst []byte, p *pending) []byte {
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	if p.bare {
		dst = append(dst, p.raw...)
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		return dst
	}
	dst = kbin.AppendInt32(dst, p.corr)
	if p.raw != nil {
		dst = append(dst, p.raw...)
	} else {
		p.resp.SetVersion(p.version)
		// Flexible responses carry header v1 (an empty tag section), except
		// ApiVersions, whose response header is always v0 so that a client can
		// parse it before it knows what we support.
		if p.resp.IsFlexible() && p.key != 18 {
			dst = append(dst, 0)
		}
		dst = p.resp.AppendTo(dst)
	}
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}
