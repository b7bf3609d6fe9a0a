package kafka

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

var fuzzPanic atomic.Value

// seedRequests are valid requests of many keys and versions; the fuzzer
// mutates their frame bodies.
func seedRequests() []kmsg.Request {
	var out []kmsg.Request
	add := func(r kmsg.Request, versions ...int16) {
		for _, v := range versions {
			r.SetVersion(v)
			out = append(out, cloneReq(r))
		}
	}
	av := kmsg.NewPtrApiVersionsRequest()
	av.ClientSoftwareName, av.ClientSoftwareVersion = "fuzz", "1"
	add(av, 0, 3, 4)
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("t")
	md.Topics = append(md.Topics, mt)
	add(md, 0, 4, 9, 12)
	pr := kmsg.NewPtrProduceRequest()
	pr.Acks = 1
	prt := kmsg.NewProduceRequestTopic()
	prt.Topic = "t"
	prp := kmsg.NewProduceRequestTopicPartition()
	prp.Records = testBatch(2)
	prt.Partitions = append(prt.Partitions, prp)
	pr.Topics = append(pr.Topics, prt)
	add(pr, 3, 9, 11)
	fr := kmsg.NewPtrFetchRequest()
	fr.MaxWaitMillis, fr.MinBytes = 10, 1
	frt := kmsg.NewFetchRequestTopic()
	frt.Topic = "t"
	frp := kmsg.NewFetchRequestTopicPartition()
	frp.PartitionMaxBytes = 1 << 20
	frt.Partitions = append(frt.Partitions, frp)
	fr.Topics = append(fr.Topics, frt)
	add(fr, 4, 12)
	lo := kmsg.NewPtrListOffsetsRequest()
	lot := kmsg.NewListOffsetsRequestTopic()
	lot.Topic = "t"
	lop := kmsg.NewListOffsetsRequestTopicPartition()
	lop.Timestamp = -1
	lot.Partitions = append(lot.Partitions, lop)
	lo.Topics = append(lo.Topics, lot)
	add(lo, 1, 9)
	ct := kmsg.NewPtrCreateTopicsRequest()
	ctt := kmsg.NewCreateTopicsRequestTopic()
	ctt.Topic, ctt.NumPartitions, ctt.ReplicationFactor = "fuzz", 1, 1
	ct.Topics = append(ct.Topics, ctt)
	add(ct, 0, 5, 7)
	ip := kmsg.NewPtrInitProducerIDRequest()
	add(ip, 0, 5)
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	fc.CoordinatorKeys = []string{"g"}
	add(fc, 0, 6)
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dcr := kmsg.NewDescribeConfigsRequestResource()
	dcr.ResourceType, dcr.ResourceName = kmsg.ConfigResourceTypeTopic, "t"
	dc.Resources = append(dc.Resources, dcr)
	add(dc, 1, 4)
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.Generation = "g", -1
	add(oc, 2, 9)
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = "g"
	add(of, 1, 7)
	dl := kmsg.NewPtrDescribeLogDirsRequest()
	add(dl, 0, 4)
	dr := kmsg.NewPtrDeleteRecordsRequest()
	drt := kmsg.NewDeleteRecordsRequestTopic()
	drt.Topic = "t"
	drp := kmsg.NewDeleteRecordsRequestTopicPartition()
	drp.Offset = -1
	drt.Partitions = append(drt.Partitions, drp)
	dr.Topics = append(dr.Topics, drt)
	add(dr, 0, 2)
	return out
}

// cloneReq copies a request at its current version by encoding and decoding.
func cloneReq(r kmsg.Request) kmsg.Request {
	c := kmsg.RequestForKey(r.Key())
	c.SetVersion(r.GetVersion())
	if err := c.ReadFrom(r.AppendTo(nil)); err != nil {
		panic(err)
	}
	return c
}

// FuzzRequest feeds arbitrary frame bodies (header and request) through the
// whole server path: framing, header parsing, version checks, kmsg decoding and
// the handler. Invariants: no handler panics, and any response that comes back
// carries the request's correlation id.
func FuzzRequest(f *testing.F) {
	for _, r := range seedRequests() {
		fr := frame(r, 1)
		f.Add(fr[4:])
	}
	// One server per fuzzing process; panics are reported through fuzzPanic
	// because F's methods may not be called inside the target.
	fuzzServer := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		client, server := net.Pipe()
		defer client.Close()
		if !fuzzServer.ServeConn(server) {
			t.Skip("server closed")
		}
		msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		msg = append(msg, body...)
		go func() {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(msg)
		}()
		client.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // most requests answer in microseconds; this bounds the rest
		var size [4]byte
		if _, err := io.ReadFull(client, size[:]); err == nil {
			n := binary.BigEndian.Uint32(size[:])
			if n < 4 || n > 64<<20 {
				t.Fatalf("response size %d", n)
			}
			resp := make([]byte, n)
			if _, err := io.ReadFull(client, resp); err == nil && len(body) >= 8 {
				if got, want := binary.BigEndian.Uint32(resp), binary.BigEndian.Uint32(body[4:]); got != want {
					t.Fatalf("correlation id %d, want %d", got, want)
				}
			}
		}
		if v := fuzzPanic.Load(); v != nil {
			t.Fatalf("handler panic: %v", v)
		}
	})
}

func newFuzzServer(tb testing.TB) *Server {
	s := newTestServer(tb)
	s.cfg.OnPanic = func(v any) { fuzzPanic.Store(v) }
	return s
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus under
// testdata/fuzz/FuzzRequest (run with IDEM_WRITE_CORPUS=1). Besides the valid
// requests it writes a few hostile shapes found worth keeping.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("IDEM_WRITE_CORPUS") == "" {
		t.Skip("set IDEM_WRITE_CORPUS=1 to regenerate testdata/fuzz/FuzzRequest")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRequest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, body []byte) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", body)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range seedRequests() {
		fr := frame(r, 1)
		write(fmt.Sprintf("seed-%s-v%d", kmsg.NameForKey(r.Key()), r.GetVersion()), fr[4:])
	}
	write("hostile-array-length", append([]byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 0}, 0x7f, 0xff, 0xff, 0xff))
	write("hostile-apiversions-v9", []byte{0, 18, 0, 9, 0, 0, 0, 1, 0, 0, 0})
	write("hostile-truncated-header", []byte{0, 0, 0, 11, 0, 0})
}
