package share

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/statelog"
	"github.com/idem-dev/idem/internal/topics"
)

// Dead letters, exactly once.
//
// A record rejected by its consumer, or released (or timed out) at the
// delivery count limit, of a group with errors.deadletterqueue.topic.name
// goes through three durable steps, each a record in the share log:
//
//  1. intent: in the same batch as the acknowledgement (or expiry) that
//     archives it, an entry "offset O of group G, topic T, partition P goes
//     to the dead-letter topic". The source record is Archiving; the
//     acknowledgement is answered once this batch is durable, and the
//     record is never delivered again.
//  2. assignment: the writer goroutine resolves the dead-letter topic
//     (creating it if the broker allows), picks its partition (P modulo its
//     partition count) and gives the entry the next sequence number of the
//     broker-owned producer id on that partition, with the partition's high
//     watermark (its durable end) as a lower bound of where it will land. Only once this is durable
//     is anything written to the dead-letter partition.
//  3. done: the writer appends the dead-letter batch (producer id, epoch,
//     that sequence), waits until it is durable in the dead-letter
//     partition, then records "done at offset X" (not waited for).
//
// Per dead-letter partition the writer appends in sequence order and never
// skips one, and a partition's durable log is a prefix of what was appended,
// so the entries found in the log are a prefix of the assigned ones. After
// a restart, an entry that is assigned but not done is looked for: the
// writer scans the dead-letter partition from the entry's lower bound for a
// batch of its producer id and sequence; found, it is done at that offset;
// not found, it is appended now (and every later one after it, in order).
// Each entry is therefore in the dead-letter topic at most once (it is
// appended only if the scan, which covers every place it could be, does not
// find it) and at least once (its intent is durable before the acknowledgement
// is answered, and the writer retries until it is done or its topic is
// gone). The partition's idempotent-producer check (the same producer id
// and sequence) is a second guard for a retry within one process. dlq_test.go
// crashes at every sync point of this sequence and counts the copies.

const (
	dlqNew      int8 = 0 // intent written, no target yet
	dlqAssigned int8 = 1 // target partition and sequence durable
	dlqDone     int8 = 2
)

type dlqEntryKey struct {
	group  string
	tp     topicPartition
	offset int64
}

type dlqEntry struct {
	key      dlqEntryKey
	status   int8
	srcTopic string
	count    int16
	reason   string
	created  int64 // unix ms
	copy     bool  // errors.deadletterqueue.copy.record.enable when archived
	dlqTopic string
	// Set at assignment:
	dlqID        [16]byte
	dlqPartition int32
	seq          int32
	lower        int64
	// Set when done:
	dlqOffset int64
	// scan: assigned before this process started, so it may already be in
	// the dead-letter partition.
	scan bool
	// order is the entry's place in the writer's queue.
	order  uint64
	warned bool // its wait was logged
}

type dlqState struct {
	pid     int64 // -1 until allocated
	epoch   int16
	entries map[dlqEntryKey]*dlqEntry // not done or failed
	seqs    map[topicPartition]int32  // next sequence per dead-letter partition
	next    uint64
}

func (d *dlqState) init() {
	d.pid, d.entries, d.seqs = -1, map[dlqEntryKey]*dlqEntry{}, map[topicPartition]int32{}
}

func (e *dlqEntry) record() statelog.Record {
	r := statelog.Record{Key: dlqKey(e.key.group, e.key.tp, e.key.offset)}
	v := enc{}
	v.i16(0)
	v.i8(e.status)
	v.str(e.srcTopic)
	v.i16(e.count)
	v.str(e.reason)
	v.i64(e.created)
	if e.copy {
		v.i8(1)
	} else {
		v.i8(0)
	}
	v.str(e.dlqTopic)
	v.id(e.dlqID)
	v.i32(e.dlqPartition)
	v.i32(e.seq)
	v.i64(e.lower)
	v.i64(e.dlqOffset)
	r.Value = v.b
	return r
}

func decodeDLQEntry(key dlqEntryKey, v []byte) (*dlqEntry, error) {
	d := dec{b: v}
	if ver := d.i16(); ver != 0 && d.err == nil {
		return nil, fmt.Errorf("%w: dead-letter entry version %d", statelog.ErrUnknownRecord, ver)
	}
	e := &dlqEntry{key: key}
	e.status = d.i8()
	e.srcTopic = d.str()
	e.count = d.i16()
	e.reason = d.str()
	e.created = d.i64()
	e.copy = d.i8() == 1
	e.dlqTopic = d.str()
	e.dlqID = d.id()
	e.dlqPartition = d.i32()
	e.seq = d.i32()
	e.lower = d.i64()
	e.dlqOffset = d.i64()
	return e, d.done()
}

// dlqIntentLocked makes the intent of step 1 and returns its record.
func (c *Coordinator) dlqIntentLocked(sp *sharePartition, o int64, count int16, st *settings, reason string) statelog.Record {
	d := &c.dlq
	d.next++
	e := &dlqEntry{
		key: dlqEntryKey{sp.g.id, sp.tp, o}, status: dlqNew, srcTopic: sp.topic, count: count,
		reason: reason, created: c.now().UnixMilli(), copy: st.dlqCopy, dlqTopic: st.dlqTopic, order: d.next,
	}
	d.entries[e.key] = e
	select {
	case c.dlqKick <- struct{}{}:
	default:
	}
	return e.record()
}

// dlqLoop is the dead-letter writer goroutine.
func (c *Coordinator) dlqLoop() {
	defer close(c.dlqDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		c.runDLQ()
		select {
		case <-c.stop:
			return
		case <-c.dlqKick:
		case <-t.C:
		}
	}
}

// runDLQ moves every pending entry as far as it can go.
func (c *Coordinator) runDLQ() {
	for _, e := range c.pendingDLQ(dlqNew) {
		if c.stopped() {
			return
		}
		if err := c.assignDLQ(e); err != nil && !e.warned {
			e.warned = true
			c.logger.Warn("dead-letter topic not ready; the record waits", "group", e.key.group, "topic", e.srcTopic, "offset", e.key.offset, "dlq_topic", e.dlqTopic, "err", err)
		}
	}
	blocked := map[topicPartition]bool{}
	for _, e := range c.pendingDLQ(dlqAssigned) {
		target := topicPartition{e.dlqID, e.dlqPartition}
		if blocked[target] || c.stopped() {
			continue
		}
		if err := c.writeDLQ(e); err != nil {
			// Later sequences of this partition wait for this one.
			blocked[target] = true
			if !e.warned {
				e.warned = true
				c.logger.Warn("dead-letter write failed; will retry", "group", e.key.group, "dlq_topic", e.dlqTopic, "err", err)
			}
		}
	}
}

func (c *Coordinator) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// pendingDLQ lists the entries in a status, assigned ones by target
// partition and sequence, new ones in the order they were made.
func (c *Coordinator) pendingDLQ(status int8) []*dlqEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*dlqEntry
	for _, e := range c.dlq.entries {
		if e.status == status {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *dlqEntry) int {
		if status == dlqAssigned {
			if c := a.dlqID != b.dlqID; c {
				return bytesCompare(a.dlqID, b.dlqID)
			}
			if a.dlqPartition != b.dlqPartition {
				return int(a.dlqPartition - b.dlqPartition)
			}
			return seqCompare(a.seq, b.seq)
		}
		return int(a.order - b.order)
	})
	return out
}

func bytesCompare(a, b [16]byte) int {
	return topicPartition{id: a}.compare(topicPartition{id: b})
}

// seqCompare orders sequences that may wrap past MaxInt32 to 0.
func seqCompare(a, b int32) int {
	d := int64(a) - int64(b)
	switch {
	case d == 0:
		return 0
	case (d > 0 && d < 1<<30) || d < -(1<<30):
		return 1
	}
	return -1
}

// errDLQUnusable marks a dead-letter topic that cannot take records now
// (missing and not auto-creatable, or not opted in): the entry waits, and
// the dead-letter writer tries again every second until an operator fixes
// the topic or the group's config.
var errDLQUnusable = errors.New("share: dead-letter topic unusable")

// resolveDLQTopic finds (or creates) the dead-letter topic and checks that
// it accepts dead letters.
func (c *Coordinator) resolveDLQTopic(name string) (TopicInfo, error) {
	prefix := c.cfg.Broker.String("errors.deadletterqueue.topic.name.prefix")
	if len(name) < len(prefix) || name[:len(prefix)] != prefix || len(name) >= 2 && name[:2] == "__" {
		return TopicInfo{}, fmt.Errorf("%w: %q does not carry the prefix %q", errDLQUnusable, name, prefix)
	}
	ti, ok := c.cfg.Topics.ByName(name)
	if !ok {
		if !c.cfg.Broker.Bool("errors.deadletterqueue.auto.create.topics.enable") {
			return TopicInfo{}, fmt.Errorf("%w: %q does not exist and errors.deadletterqueue.auto.create.topics.enable is false", errDLQUnusable, name)
		}
		var err error
		ti, err = c.cfg.Topics.CreateTopic(name, int32(c.cfg.Broker.Int("num.partitions")), map[string]string{"errors.deadletterqueue.group.enable": "true"})
		if err != nil {
			if ti2, ok := c.cfg.Topics.ByName(name); ok {
				ti = ti2 // created meanwhile
			} else {
				return TopicInfo{}, err
			}
		} else {
			c.logger.Info("dead-letter topic created", "topic", name, "partitions", ti.Partitions)
		}
	}
	if ti.Configs["errors.deadletterqueue.group.enable"] != "true" {
		return TopicInfo{}, fmt.Errorf("%w: %q does not have errors.deadletterqueue.group.enable=true", errDLQUnusable, name)
	}
	return ti, nil
}

// assignDLQ is step 2.
func (c *Coordinator) assignDLQ(e *dlqEntry) error {
	if pid := c.dlqProducer(); pid < 0 {
		id, err := c.cfg.Topics.NewProducerID()
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.dlq.pid < 0 {
			c.dlq.pid, c.dlq.epoch = id, 0
			if _, err := c.appendLocked([]statelog.Record{producerRecord(id, 0)}); err != nil {
				c.mu.Unlock()
				return err
			}
		}
		c.mu.Unlock()
	}
	ti, err := c.resolveDLQTopic(e.dlqTopic)
	if err != nil {
		return err
	}
	part := e.key.tp.partition % ti.Partitions
	p, err := c.cfg.Topics.Partition(ti.Name, part)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.dlq.entries[e.key] != e || e.status != dlqNew {
		c.mu.Unlock()
		return nil
	}
	target := topicPartition{ti.ID, part}
	seq := c.dlq.seqs[target]
	next := seq + 1
	if seq == 1<<31-1 {
		next = 0
	}
	e.status, e.dlqID, e.dlqPartition, e.seq, e.lower, e.dlqTopic = dlqAssigned, ti.ID, part, seq, p.HighWatermark(), ti.Name
	c.dlq.seqs[target] = next
	end, err := c.appendLocked([]statelog.Record{e.record(), seqRecord(target, next)})
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitDurable(context.Background(), end)
}

func (c *Coordinator) dlqProducer() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dlq.pid
}

// reassignDLQ sends an assigned entry whose dead-letter partition was
// deleted back to assignment: it cannot be in a partition that no longer
// exists, so writing it to the topic's new incarnation cannot duplicate it.
func (c *Coordinator) reassignDLQ(e *dlqEntry, why error) {
	c.logger.Warn("dead-letter partition gone; assigning the record again", "group", e.key.group, "topic", e.srcTopic,
		"partition", e.key.tp.partition, "offset", e.key.offset, "dlq_topic", e.dlqTopic, "err", why)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dlq.entries[e.key] != e {
		return
	}
	e.status, e.scan = dlqNew, false
	if _, err := c.appendLocked([]statelog.Record{e.record()}); err != nil {
		c.logger.Error("share log append failed", "err", err)
	}
}

// finishDLQLocked records a finished entry (not waited for: if the record
// is lost, recovery finds the copy by its sequence) and archives the
// source record.
func (c *Coordinator) finishDLQLocked(e *dlqEntry) {
	delete(c.dlq.entries, e.key)
	recs := []statelog.Record{e.record()}
	if g := c.groups[e.key.group]; g != nil {
		if sp := g.sps[e.key.tp]; sp != nil && !sp.deleted && e.key.offset >= sp.spso && e.key.offset < sp.end() {
			if r := sp.at(e.key.offset); r.state == stArchiving {
				r.state = stArchived
				sp.advance()
				recs = append(recs, stateRecord(g.id, sp.tp, false, sp.spso, []run{{first: e.key.offset, last: e.key.offset, state: stArchived, count: r.count}}, false))
			}
		}
	}
	if _, err := c.appendLocked(recs); err != nil {
		c.logger.Error("share log append failed finishing a dead letter", "err", err)
	}
}

// writeDLQ is step 3 for one assigned entry.
func (c *Coordinator) writeDLQ(e *dlqEntry) error {
	ti, ok := c.cfg.Topics.ByID(e.dlqID)
	if !ok {
		c.reassignDLQ(e, fmt.Errorf("dead-letter topic %q was deleted", e.dlqTopic))
		return nil
	}
	p, err := c.cfg.Topics.Partition(ti.Name, e.dlqPartition)
	if errors.Is(err, topics.ErrUnknownPartition) {
		c.reassignDLQ(e, err)
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	pid, epoch := c.dlq.pid, c.dlq.epoch
	c.mu.Unlock()
	if e.scan {
		off, found, err := findSequence(p, e.lower, pid, e.seq)
		if err != nil {
			return err
		}
		if found {
			c.doneDLQ(e, off, false)
			return nil
		}
	}
	key, value, headers, err := c.dlqPayload(e)
	if err != nil {
		return err
	}
	batch := encodeDLQBatch(pid, epoch, e.seq, c.now().UnixMilli(), key, value, headers)
	res, err := p.Append(batch)
	if err != nil {
		return err
	}
	if err := p.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
		return err
	}
	c.doneDLQ(e, res.BaseOffset, res.Duplicate)
	return nil
}

func (c *Coordinator) doneDLQ(e *dlqEntry, off int64, dup bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dlq.entries[e.key] != e {
		return
	}
	e.status, e.dlqOffset = dlqDone, off
	c.stats.deadLettered.Add(1)
	c.logger.Debug("record dead-lettered", "group", e.key.group, "topic", e.srcTopic, "partition", e.key.tp.partition,
		"offset", e.key.offset, "dlq_topic", e.dlqTopic, "dlq_partition", e.dlqPartition, "dlq_offset", off, "retry", dup)
	c.finishDLQLocked(e)
}

// findSequence scans a partition from offset from for a batch of pid
// starting at sequence seq.
func findSequence(p Partition, from, pid int64, seq int32) (int64, bool, error) {
	from = max(from, p.StartOffset())
	hw := p.HighWatermark()
	for from < hw {
		data, err := p.Read(from, readChunk)
		if err != nil {
			return 0, false, err
		}
		batches := parseBatches(data)
		if len(batches) == 0 {
			break
		}
		pos := 0
		for _, b := range batches {
			h := data[pos:b.end]
			pos = b.end
			if b.producerID == pid && int32(binary.BigEndian.Uint32(h[53:])) == seq {
				return b.base, true, nil
			}
		}
		from = batches[len(batches)-1].last + 1
	}
	return 0, false, nil
}

// dlqPayload builds the dead-letter record: KIP-1191's headers, and the
// source record's key, value and headers when copying is on.
func (c *Coordinator) dlqPayload(e *dlqEntry) (key, value []byte, headers [][2][]byte, err error) {
	if e.copy {
		key, value, headers, err = c.sourceRecord(e.srcTopic, e.key.tp.partition, e.key.offset)
		if err != nil && !errors.Is(err, errRecordGone) {
			return nil, nil, nil, err
		}
	}
	h := func(k, v string) { headers = append(headers, [2][]byte{[]byte(k), []byte(v)}) }
	h("__dlq.errors.topic", e.srcTopic)
	h("__dlq.errors.partition", strconv.Itoa(int(e.key.tp.partition)))
	h("__dlq.errors.offset", strconv.FormatInt(e.key.offset, 10))
	h("__dlq.errors.group", e.key.group)
	h("__dlq.errors.delivery.count", strconv.Itoa(int(e.count)))
	h("__dlq.errors.message", e.reason)
	return key, value, headers, nil
}

var errRecordGone = errors.New("share: source record no longer in the log")

var decompressor = kgo.DefaultDecompressor()

// sourceRecord reads one record of a partition.
func (c *Coordinator) sourceRecord(topic string, partition int32, offset int64) (key, value []byte, headers [][2][]byte, err error) {
	p, err := c.cfg.Topics.Partition(topic, partition)
	if err != nil {
		return nil, nil, nil, err
	}
	if offset < p.StartOffset() {
		return nil, nil, nil, errRecordGone
	}
	data, err := p.Read(offset, 1)
	if err != nil {
		return nil, nil, nil, err
	}
	bs := parseBatches(data)
	if len(bs) == 0 || bs[0].base > offset || bs[0].last < offset {
		return nil, nil, nil, errRecordGone
	}
	b := data[:bs[0].end]
	h, err := logstore.ParseBatch(b)
	if err != nil {
		return nil, nil, nil, err
	}
	recs := b[logstore.BatchHeaderSize:]
	if codec := h.Compression(); codec != 0 {
		recs, err = decompressor.Decompress(recs, kgo.CompressionCodecType(codec))
		if err != nil {
			return nil, nil, nil, err
		}
	}
	r := kbin.Reader{Src: recs}
	for i := int32(0); i < h.NumRecords && r.Ok(); i++ {
		length := r.Varint()
		body := kbin.Reader{Src: r.Span(int(length))}
		body.Int8()
		body.Varlong()
		delta := body.Varint()
		k := body.VarintBytes()
		v := body.VarintBytes()
		n := body.VarintArrayLen()
		var hs [][2][]byte
		for range max(n, 0) {
			hk := body.VarintBytes()
			hv := body.VarintBytes()
			hs = append(hs, [2][]byte{hk, hv})
		}
		if !body.Ok() {
			break
		}
		if h.BaseOffset+int64(delta) == offset {
			return slices.Clone(k), slices.Clone(v), hs, nil
		}
	}
	return nil, nil, nil, errRecordGone
}

// encodeDLQBatch builds an uncompressed v2 batch of one record written by
// the broker's dead-letter producer id at sequence seq.
func encodeDLQBatch(pid int64, epoch int16, seq int32, ts int64, key, value []byte, headers [][2][]byte) []byte {
	var body []byte
	body = append(body, 0)             // attributes
	body = kbin.AppendVarlong(body, 0) // timestamp delta
	body = kbin.AppendVarint(body, 0)  // offset delta
	body = appendVarintBytes(body, key)
	body = appendVarintBytes(body, value)
	body = kbin.AppendVarint(body, int32(len(headers)))
	for _, h := range headers {
		body = appendVarintBytes(body, h[0])
		body = appendVarintBytes(body, h[1])
	}
	rec := kbin.AppendVarint(nil, int32(len(body)))
	rec = append(rec, body...)

	be := binary.BigEndian
	b := make([]byte, logstore.BatchHeaderSize, logstore.BatchHeaderSize+len(rec))
	be.PutUint32(b[8:], uint32(logstore.BatchHeaderSize-12+len(rec)))
	b[16] = 2
	be.PutUint64(b[27:], uint64(ts))
	be.PutUint64(b[35:], uint64(ts))
	be.PutUint64(b[43:], uint64(pid))
	be.PutUint16(b[51:], uint16(epoch))
	be.PutUint32(b[53:], uint32(seq))
	be.PutUint32(b[57:], 1)
	b = append(b, rec...)
	logstore.FixCRC(b)
	return b
}

func appendVarintBytes(b, v []byte) []byte {
	if v == nil {
		return kbin.AppendVarint(b, -1)
	}
	b = kbin.AppendVarint(b, int32(len(v)))
	return append(b, v...)
}
