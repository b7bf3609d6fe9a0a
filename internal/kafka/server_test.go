package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
)

// newTestServer builds a server over an in-memory file system with one topic
// "t" of two partitions. Panics in handlers fail the test.
func newTestServer(t testing.TB, props ...string) *Server {
	t.Helper()
	mem := logstore.NewMemFS()
	conf := config.New()
	for i := 0; i+1 < len(props); i += 2 {
		if err := conf.Set(props[i], props[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := catalog.Open(mem, "/d")
	if err != nil {
		t.Fatal(err)
	}
	parts, err := topics.OpenManager(topics.ManagerConfig{FS: mem, DataDir: "/d", Catalog: cat, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parts.CreateTopic("t", 2, nil); err != nil {
		t.Fatal(err)
	}
	pids, err := topics.OpenIDAllocator(mem, "/d/producer_ids")
	if err != nil {
		t.Fatal(err)
	}
	gcfg := group.DefaultConfig()
	gcfg.FS, gcfg.Dir, gcfg.InitialRebalanceDelay = mem, "/d/__consumer_offsets", 0
	groups, err := group.NewCoordinator(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &api.Env{
		Groups: groups, PartitionExists: parts.Exists, Logger: discard(),
		NodeID: 1, Host: "127.0.0.1", Port: 9092, ClusterID: cat.ClusterID(),
		Config: conf, Partitions: parts, ProducerIDs: pids,
	}
	s := NewServer(Config{
		Env: env, MaxRequestBytes: int32(conf.Int("socket.request.max.bytes")), Logger: discard(),
		DrainTimeout: 2 * time.Second,
		OnPanic:      func(v any) { t.Errorf("handler panic: %v", v) },
	})
	env.Closing = s.Closing()
	t.Cleanup(func() {
		s.Close()
		groups.Close()
		parts.Close()
	})
	return s
}

// listen starts serving s on a loopback port and returns a dial function.
func listen(t testing.TB, s *Server) func() net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); err != nil {
		t.Fatal(err)
	}
	return func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
}

// frame encodes a request with header v1/v2 as a client would.
func frame(req kmsg.Request, corr int32) []byte {
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, kmsg.StringPtr("test"))
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// readResponse reads one response frame and returns its correlation id and
// body (after the header tag byte when flexible is true).
func readResponse(t testing.TB, c net.Conn, flexible bool) (int32, []byte) {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	corr := int32(binary.BigEndian.Uint32(body))
	body = body[4:]
	if flexible {
		body = body[1:]
	}
	return corr, body
}

// expectClosed asserts that the server closes the connection.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open")
	}
}

func apiVersions(version int16) *kmsg.ApiVersionsRequest {
	r := kmsg.NewPtrApiVersionsRequest()
	r.SetVersion(version)
	r.ClientSoftwareName, r.ClientSoftwareVersion = "test", "1"
	return r
}

func TestApiVersionsAllVersions(t *testing.T) {
	dial := listen(t, newTestServer(t))
	c := dial()
	for v := int16(0); v <= 4; v++ {
		c.Write(frame(apiVersions(v), int32(v)))
		corr, body := readResponse(t, c, false) // header v0 even when flexible
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(body); err != nil || corr != int32(v) || resp.ErrorCode != 0 {
			t.Fatalf("v%d: corr %d err %v code %d", v, corr, err, resp.ErrorCode)
		}
		want := map[int16][2]int16{0: {0, 12}, 1: {4, 12}, 3: {0, 12}, 10: {0, 6}, 11: {0, 9}, 18: {0, 4}, 22: {0, 5}}
		got := map[int16][2]int16{}
		last := int16(-1)
		for _, k := range resp.ApiKeys {
			if k.ApiKey <= last {
				t.Fatal("ApiKeys not sorted")
			}
			last = k.ApiKey
			got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
		}
		for k, r := range want {
			if got[k] != r {
				t.Fatalf("key %d advertised %v, want %v", k, got[k], r)
			}
		}
	}
}

func TestApiVersionsTooNew(t *testing.T) {
	dial := listen(t, newTestServer(t))
	c := dial()
	req := apiVersions(4)
	f := frame(req, 7)
	binary.BigEndian.PutUint16(f[6:], 9) // claim v9, which we cannot parse
	c.Write(f)
	corr, body := readResponse(t, c, false)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := resp.ReadFrom(body); err != nil || corr != 7 {
		t.Fatalf("corr %d err %v", corr, err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) == 0 {
		t.Fatalf("code %d keys %d", resp.ErrorCode, len(resp.ApiKeys))
	}
	// The connection stays usable.
	c.Write(frame(apiVersions(3), 8))
	if corr, _ := readResponse(t, c, false); corr != 8 {
		t.Fatalf("corr %d", corr)
	}
}

func TestUnsupportedVersionsClose(t *testing.T) {
	dial := listen(t, newTestServer(t))
	for _, tc := range []struct {
		name         string
		key, version int16
	}{
		{"fetch v99", 1, 99},
		{"fetch v3", 1, 3},
		{"unknown key", 250, 0},
		{"negative key", -5, 0},
		{"listoffsets v0", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial()
			f := frame(apiVersions(0), 1)
			binary.BigEndian.PutUint16(f[4:], uint16(tc.key))
			binary.BigEndian.PutUint16(f[6:], uint16(tc.version))
			c.Write(f)
			expectClosed(t, c)
		})
	}
}

func TestProduceOldVersionsRejectedPerPartition(t *testing.T) {
	dial := listen(t, newTestServer(t))
	c := dial()
	for v := int16(0); v <= 2; v++ {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(v)
		req.Acks = 1
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = []byte("old message set")
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		c.Write(frame(req, 1))
		_, body := readResponse(t, c, false)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		if err := resp.ReadFrom(body); err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnsupportedVersion.Code {
			t.Fatalf("v%d: code %d", v, code)
		}
	}
}

func TestHostileFrames(t *testing.T) {
	s := newTestServer(t, "socket.request.max.bytes", "1048576")
	dial := listen(t, s)
	t.Run("oversize", func(t *testing.T) {
		c := dial()
		c.Write([]byte{0x00, 0x20, 0x00, 0x00}) // 2 MiB > 1 MiB cap
		expectClosed(t, c)
	})
	t.Run("negative size", func(t *testing.T) {
		c := dial()
		c.Write([]byte{0xff, 0xff, 0xff, 0xf0})
		expectClosed(t, c)
	})
	t.Run("tiny size", func(t *testing.T) {
		c := dial()
		c.Write([]byte{0, 0, 0, 3, 1, 2, 3})
		expectClosed(t, c)
	})
	t.Run("lying length then hang up", func(t *testing.T) {
		c := dial()
		c.Write([]byte{0x00, 0x0f, 0xff, 0xff, 0, 18, 0, 0})
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c)
	})
	t.Run("large non-produce frame", func(t *testing.T) {
		s2 := newTestServer(t)
		c := listen(t, s2)()
		hdr := []byte{0x01, 0x00, 0x00, 0x00, 0, 3, 0, 1} // 16 MiB Metadata
		c.Write(hdr)
		c.Write(make([]byte, 64<<10))
		expectClosed(t, c)
	})
	t.Run("garbage body", func(t *testing.T) {
		c := dial()
		f := frame(apiVersions(0), 1)
		f = append(f[:14], bytes.Repeat([]byte{0x7f}, 40)...) // array length far beyond the bytes present
		binary.BigEndian.PutUint16(f[4:], 3)                  // Metadata v0 with a garbage body
		binary.BigEndian.PutUint32(f, uint32(len(f)-4))
		c.Write(f)
		expectClosed(t, c)
	})
	t.Run("random garbage", func(t *testing.T) {
		for i := range 20 {
			c := dial()
			g := make([]byte, 200)
			for j := range g {
				g[j] = byte(j*31 + i*7)
			}
			binary.BigEndian.PutUint32(g, 190)
			c.Write(g)
			c.(*net.TCPConn).CloseWrite()
			io.ReadAll(c)
		}
	})
	// The server still answers afterwards.
	c := dial()
	c.Write(frame(apiVersions(3), 42))
	if corr, _ := readResponse(t, c, false); corr != 42 {
		t.Fatalf("corr %d", corr)
	}
}

// TestReadFrameBoundedAllocation: a size prefix promising 100 MiB followed by
// a few bytes must not allocate anywhere near 100 MiB.
func TestReadFrameBoundedAllocation(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		r := io.MultiReader(bytes.NewReader([]byte{0, 0}), strings.NewReader(strings.Repeat("x", 1000)))
		if _, err := readFrame(r, 100<<20, 100<<20, false); err == nil {
			t.Fatal("short frame accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("10 lying frames allocated %d bytes", grew)
	}
	// A real frame arriving in pieces is read whole.
	want := bytes.Repeat([]byte("abcdefgh"), 100000)
	for _, budgeted := range []bool{false, true} {
		got, err := readFrame(iotestHalf{bytes.NewReader(want)}, int32(len(want)), 100<<20, budgeted)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("readFrame (budgeted %v): %v", budgeted, err)
		}
	}
	// A frame whose size the memory budget already holds is allocated once,
	// whole: no doubling, no copies of what arrived.
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := readFrame(iotestHalf{bytes.NewReader(want)}, int32(len(want)), 100<<20, true); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(len(want))+firstChunk+64<<10 {
		t.Fatalf("a budgeted frame of %d bytes allocated %d", len(want), grew)
	}
}

type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:1000]
	}
	return h.r.Read(p)
}

// TestPipelinedOrderAndAcks0 sends several requests at once, including an
// acks=0 produce, and checks responses come back in order with none for the
// acks=0 request.
func TestPipelinedOrderAndAcks0(t *testing.T) {
	dial := listen(t, newTestServer(t))
	c := dial()
	var buf []byte
	for i := int32(1); i <= 10; i++ {
		if i == 5 {
			req := kmsg.NewPtrProduceRequest()
			req.SetVersion(7)
			req.Acks = 0
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "t"
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Records = testBatch(3)
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			buf = append(buf, frame(req, i)...)
			continue
		}
		m := kmsg.NewPtrMetadataRequest()
		m.SetVersion(int16(i % 13))
		buf = append(buf, frame(m, i)...)
	}
	c.Write(buf)
	for i := int32(1); i <= 10; i++ {
		if i == 5 {
			continue
		}
		corr, _ := readResponse(t, c, i%13 >= 9)
		if corr != i {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

// testBatch is a minimal valid non-idempotent batch of n records.
func testBatch(n int) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1), ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: recs}
	out := b.AppendTo(nil)
	b.Length = int32(len(out) - 12)
	out = b.AppendTo(nil)
	logstore.FixCRC(out)
	return out
}

func produceReq(version int16, acks int16, topic string, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(version)
	req.Acks, req.TimeoutMillis = acks, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func produceCode(t *testing.T, c net.Conn, req *kmsg.ProduceRequest) int16 {
	t.Helper()
	c.Write(frame(req, 3))
	_, body := readResponse(t, c, req.IsFlexible())
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

func TestProduceLimitsAndErrors(t *testing.T) {
	dial := listen(t, newTestServer(t, "message.max.bytes", "2000", "auto.create.topics.enable", "true"))
	c := dial()
	if code := produceCode(t, c, produceReq(9, -1, "t", testBatch(3))); code != 0 {
		t.Fatalf("valid batch: %v", kerr.ErrorForCode(code))
	}
	big := testBatch(400) // ~3 KiB
	if code := produceCode(t, c, produceReq(9, -1, "t", big)); code != kerr.MessageTooLarge.Code {
		t.Fatalf("oversize batch: %v", kerr.ErrorForCode(code))
	}
	// Produce never auto-creates.
	if code := produceCode(t, c, produceReq(9, 1, "nope", testBatch(1))); code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown topic: %v", kerr.ErrorForCode(code))
	}
	if code := produceCode(t, c, produceReq(9, 2, "t", testBatch(1))); code != kerr.InvalidRequiredAcks.Code {
		t.Fatalf("acks=2: %v", kerr.ErrorForCode(code))
	}
	zstd := testBatch(1)
	zstd[22] |= 4
	logstore.FixCRC(zstd)
	if code := produceCode(t, c, produceReq(6, 1, "t", zstd)); code != kerr.UnsupportedCompressionType.Code {
		t.Fatalf("zstd at v6: %v", kerr.ErrorForCode(code))
	}
	// acks=0 with an error closes the connection (the client refreshes metadata).
	c.Write(frame(produceReq(9, 0, "nope", testBatch(1)), 4))
	expectClosed(t, c)
}

func TestMetadataTopicsAndAutoCreate(t *testing.T) {
	dial := listen(t, newTestServer(t, "num.partitions", "3"))
	c := dial()
	md := func(version int16, allowAuto bool, topics ...string) *kmsg.MetadataResponse {
		t.Helper()
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(version)
		req.AllowAutoTopicCreation = allowAuto
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, n := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(n)
			req.Topics = append(req.Topics, rt)
		}
		c.Write(frame(req, 9))
		_, body := readResponse(t, c, req.IsFlexible())
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		if err := resp.ReadFrom(body); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// v1+: an empty list means no topics; v0: all topics.
	if r := md(1, false); len(r.Topics) != 0 || r.ControllerID != 1 {
		t.Fatalf("v1 empty list: %d topics, controller %d", len(r.Topics), r.ControllerID)
	}
	// v0 has no IsInternal field; the internal topic is listed all the same.
	if r := md(0, false); len(r.Topics) != 2 || *r.Topics[0].Topic != "t" || *r.Topics[1].Topic != "__consumer_offsets" {
		t.Fatalf("v0 empty list: %d topics", len(r.Topics))
	}
	if r := md(9, false, "fresh"); r.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("no auto-create: %d", r.Topics[0].ErrorCode)
	}
	r := md(12, true, "fresh", "bad name!")
	if r.Topics[0].ErrorCode != 0 || len(r.Topics[0].Partitions) != 3 || r.Topics[0].TopicID == [16]byte{} {
		t.Fatalf("auto-created: %+v", r.Topics[0])
	}
	if r.Topics[1].ErrorCode != kerr.InvalidTopicException.Code {
		t.Fatalf("invalid name: %d", r.Topics[1].ErrorCode)
	}
	p := r.Topics[0].Partitions[0]
	if p.Leader != 1 || p.LeaderEpoch != 0 || len(p.ISR) != 1 {
		t.Fatalf("partition %+v", p)
	}
	// Before v4 auto-creation is implied.
	if r := md(3, false, "implied"); r.Topics[0].ErrorCode != 0 {
		t.Fatalf("v3 auto-create: %d", r.Topics[0].ErrorCode)
	}
}

// TestProduceManyEmptyPartitions: a frame declaring millions of tiny
// partition entries is refused before kmsg allocates an array for them.
func TestProduceManyEmptyPartitions(t *testing.T) {
	dial := listen(t, newTestServer(t))
	c := dial()
	req := produceReq(7, 1, "t", testBatch(1))
	f := frame(req, 1)
	// Rewrite: one topic "t" with 2,000,000 partitions of null records.
	hdr := f[:4+10+2+2+4+4+4+2+1] // size, header, txn id (null), acks, timeout, topics len, name
	body := append([]byte(nil), hdr...)
	n := 2_000_000
	body = binary.BigEndian.AppendUint32(body, uint32(n))
	for i := range n {
		body = binary.BigEndian.AppendUint32(body, uint32(i))
		body = binary.BigEndian.AppendUint32(body, 0xffffffff)
	}
	binary.BigEndian.PutUint32(body, uint32(len(body)-4))
	if err := prescanProduce(body[18:], 7); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("prescan: %v", err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c.Write(body)
	expectClosed(t, c)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 200<<20 {
		t.Fatalf("a 16 MB frame cost %d MB of allocation", grew>>20)
	}
}

func TestInjectedFaults(t *testing.T) {
	s := newTestServer(t)
	dial := listen(t, s)
	s.SetFault(18, func(kmsg.Request) Fault { return Fault{Delay: 100 * time.Millisecond} })
	c := dial()
	start := time.Now()
	c.Write(frame(apiVersions(3), 1))
	if corr, _ := readResponse(t, c, false); corr != 1 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delayed response: corr %d after %v", corr, time.Since(start))
	}
	s.SetFault(18, func(kmsg.Request) Fault { return Fault{Drop: true} })
	c.Write(frame(apiVersions(3), 2))
	expectClosed(t, c)
	// A lost response: the earlier pipelined answer arrives, then the
	// connection closes instead of the second.
	s.SetFault(18, nil)
	s.SetFault(3, func(kmsg.Request) Fault { return Fault{LoseResponse: true} })
	c = dial()
	c.Write(append(frame(apiVersions(3), 3), frame(kmsg.NewPtrMetadataRequest(), 4)...))
	if corr, _ := readResponse(t, c, false); corr != 3 {
		t.Fatalf("corr %d", corr)
	}
	expectClosed(t, c)
}

// countingHandler counts log records by message.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestGarbageConnectionsAreLoggedThrottled: a flood of connections that
// break the protocol (fuzzers, port scanners) costs at most a log line a
// second, with a count of what was held back, not a line each.
func TestGarbageConnectionsAreLoggedThrottled(t *testing.T) {
	s := newTestServer(t)
	h := &countingHandler{n: map[string]int{}}
	s.log = slog.New(h)
	dial := listen(t, s)
	for range 300 {
		c := dial()
		c.Write([]byte{0, 0, 0, 12, 0x7f, 0x7f, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0}) // unknown api key
		expectClosed(t, c)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.n["closing connection"]; n == 0 || n > 10 {
		t.Fatalf("%d \"closing connection\" lines for 300 bad connections", n)
	}
}
