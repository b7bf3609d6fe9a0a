package benchmark

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The compression scenario: each codec's produce and consume throughput and
// the broker CPU each megabyte costs. The broker should store batches as the
// producer compressed them and hand them out as stored, so its CPU per MB
// should not depend much on the codec; the consumer checks the codec of
// every batch it reads to catch a broker that recompresses.

// CompressionRow is one codec.
type CompressionRow struct {
	Codec   string     `json:"codec"`
	Produce Throughput `json:"produce"`
	Consume Throughput `json:"consume"`
	// CPU is broker user+system CPU milliseconds per MB of record values
	// (uncompressed), while producing and while consuming.
	ProduceCPUMsPerMB float64 `json:"produce_cpu_ms_per_mb"`
	ConsumeCPUMsPerMB float64 `json:"consume_cpu_ms_per_mb"`
	DiskBytes         int64   `json:"disk_bytes"` // of the topic's partition directories
	// StoredCodec is the codec of the batches the consumer received and
	// Recompressed how many records came in a batch of another codec than
	// the producer's.
	StoredCodec  string `json:"stored_codec"`
	Recompressed int    `json:"recompressed"`
}

// CompressionReport is the compression scenario's result.
type CompressionReport struct {
	RecordBytes int              `json:"record_bytes"`
	Rows        []CompressionRow `json:"rows"`
}

// codecs are Kafka's batch codecs, by their attribute number.
var codecs = []struct {
	name  string
	attr  uint8
	codec kgo.CompressionCodec
}{
	{"none", 0, kgo.NoCompression()},
	{"gzip", 1, kgo.GzipCompression()},
	{"snappy", 2, kgo.SnappyCompression()},
	{"lz4", 3, kgo.Lz4Compression()},
	{"zstd", 4, kgo.ZstdCompression()},
}

func codecName(attr uint8) string {
	for _, c := range codecs {
		if c.attr == attr {
			return c.name
		}
	}
	return fmt.Sprintf("unknown(%d)", attr)
}

const compressionRecordBytes = 1024

// RunCompression produces cfg.CompressionRecords 1-KiB JSON-like records
// (compressible as real events are, unlike zeros or random bytes) with each
// codec to its own topic, consumes them back, and reads the broker's CPU
// time around each half.
func RunCompression(ctx context.Context, cfg ScaleConfig) (*CompressionReport, error) {
	if cfg.CompressionRecords <= 0 {
		return nil, fmt.Errorf("%d records: want at least 1", cfg.CompressionRecords)
	}
	rep := &CompressionReport{RecordBytes: compressionRecordBytes}
	dir, remove, err := scaleDataDir(cfg, "compression")
	if err != nil {
		return nil, err
	}
	defer remove()
	sp, err := newSpawner(cfg)
	if err != nil {
		return nil, err
	}
	child, _, err := sp.start(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer child.kill()
	values := eventValues(1024, compressionRecordBytes)
	for _, c := range codecs {
		progressf(cfg.Progress, "compression %s: produce and consume %d records", c.name, cfg.CompressionRecords)
		row, err := runCodec(ctx, child, c.name, c.attr, c.codec, cfg.CompressionRecords, values)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		if row.DiskBytes, err = child.topicDiskBytes(ctx, "compression-"+c.name); err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, row)
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return rep, child.stop(stopCtx)
}

func runCodec(ctx context.Context, child *childBroker, name string, attr uint8, codec kgo.CompressionCodec, n int, values [][]byte) (CompressionRow, error) {
	row := CompressionRow{Codec: name}
	topic := "compression-" + name
	if err := child.createTopics(ctx, 4, topic); err != nil {
		return row, err
	}
	before, err := child.stats()
	if err != nil {
		return row, err
	}
	if row.Produce, err = child.produceSpread(ctx, []string{topic}, n, values, kgo.ProducerBatchCompression(codec)); err != nil {
		return row, err
	}
	mid, err := child.stats()
	if err != nil {
		return row, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(child.addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		return row, err
	}
	defer cl.Close()
	var got int
	var bytes int64
	row.StoredCodec = name
	start := time.Now()
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return row, err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return row, fmt.Errorf("consume %s: %w", topic, errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			bytes += int64(len(r.Value))
			if a := r.Attrs.CompressionType(); a != attr {
				row.Recompressed++
				row.StoredCodec = codecName(a)
			}
		})
	}
	row.Consume = throughput(got, bytes, time.Since(start))
	after, err := child.stats()
	if err != nil {
		return row, err
	}
	mb := float64(row.Produce.Bytes) / 1e6
	row.ProduceCPUMsPerMB = (mid.CPU - before.CPU) * 1000 / mb
	row.ConsumeCPUMsPerMB = (after.CPU - mid.CPU) * 1000 / mb
	return row, nil
}

// eventValues makes n JSON-like values of size bytes: field names repeat,
// ids and words vary, as in the event streams compression is used for.
func eventValues(n, size int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"checkout", "page_view", "add_to_cart", "search", "login", "logout", "refund", "shipped", "delivered", "review"}
	values := make([][]byte, n)
	for i := range values {
		v := fmt.Appendf(nil, `{"id":%d,"user":"user-%06d","session":"%016x","events":[`, i, rng.IntN(1_000_000), rng.Uint64())
		for len(v) < size-64 {
			v = fmt.Appendf(v, `{"type":"%s","sku":"SKU-%05d","qty":%d,"price_cents":%d},`,
				words[rng.IntN(len(words))], rng.IntN(100_000), 1+rng.IntN(9), rng.IntN(100_000))
		}
		v = append(v, `{"type":"end"}]}`...)
		for len(v) < size {
			v = append(v, ' ')
		}
		values[i] = v[:size]
	}
	return values
}

// topicDiskBytes is the size of topic's directory, which the broker names
// by topic ID: <data-dir>/topics/<id in hex>.
func (c *childBroker) topicDiskBytes(ctx context.Context, topic string) (int64, error) {
	adm, closeAdm, err := c.admin()
	if err != nil {
		return 0, err
	}
	defer closeAdm()
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return 0, fmt.Errorf("topic %s: not listed (%v)", topic, d.Err)
	}
	dir := filepath.Join(c.dataDir, "topics", hex.EncodeToString(d.ID[:]))
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("topic %s directory: %w", topic, err)
	}
	return dirBytes(dir), nil
}

// Format prints one line per codec and a line about recompression.
func (r *CompressionReport) Format(w io.Writer) {
	fmt.Fprintf(w, "compression: %d-byte JSON-like records, idempotent acks=all; CPU = broker utime+stime (10 ms ticks) per MB of record values\n", r.RecordBytes)
	fmt.Fprintf(w, "%-7s %9s %12s %12s %14s %14s %9s %7s\n", "codec", "records", "produce MB/s", "consume MB/s", "produce cpu/MB", "consume cpu/MB", "disk MiB", "stored")
	recompressed := 0
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%-7s %9d %12.1f %12.1f %12.1fms %12.1fms %9.1f %7s\n", row.Codec, row.Produce.Records, row.Produce.MBPerS,
			row.Consume.MBPerS, row.ProduceCPUMsPerMB, row.ConsumeCPUMsPerMB, mib(row.DiskBytes), row.StoredCodec)
		recompressed += row.Recompressed
	}
	if recompressed == 0 {
		fmt.Fprintln(w, "every batch was consumed in the codec it was produced with: the broker does not recompress")
	} else {
		fmt.Fprintf(w, "%d records came back in another codec than they were produced with: the broker recompresses\n", recompressed)
	}
}

// Charts are throughput and broker CPU by codec.
func (r *CompressionReport) Charts() []Chart {
	var cats []string
	var prod, cons, pcpu, ccpu []float64
	for _, row := range r.Rows {
		cats = append(cats, row.Codec)
		prod = append(prod, row.Produce.MBPerS)
		cons = append(cons, row.Consume.MBPerS)
		pcpu = append(pcpu, row.ProduceCPUMsPerMB)
		ccpu = append(ccpu, row.ConsumeCPUMsPerMB)
	}
	return []Chart{
		{File: "compression-throughput.svg", Title: "Throughput by codec (MB of uncompressed record values per second)",
			XLabel: "codec", YLabel: "MB/s", Categories: cats, ValueDecimals: 1,
			Series: []Series{{"produce", prod}, {"consume", cons}}},
		{File: "compression-cpu.svg", Title: "Broker CPU per MB by codec",
			XLabel: "codec", YLabel: "CPU ms per MB", Categories: cats, ValueDecimals: 1,
			Series: []Series{{"producing", pcpu}, {"consuming", ccpu}}},
	}
}
