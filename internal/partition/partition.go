// Package partition is one topic partition as the broker sees it: a
// logstore.Log plus the idempotent-producer state that decides whether a batch
// is new, a retry, or out of order, and the high-watermark notifications that
// wake Fetch long-polls.
//
// The high watermark is the log's durable offset: consumers never see a record
// a power loss could take back. Producer state is rebuilt on open from a
// snapshot plus a replay of the log after it, so a producer's retry after kill -9
// or power loss is still recognised as a duplicate.
package partition

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"

	"github.com/idem-dev/idem/internal/logstore"
)

// Batch validation errors (the Kafka layer maps them to error codes).
var (
	// ErrCorruptBatch: the batch fails its length or CRC check (CORRUPT_MESSAGE).
	ErrCorruptBatch = errors.New("partition: corrupt record batch")
	// ErrInvalidRecord: a structurally valid batch that clients may not send:
	// a control batch, a record count that disagrees with the offset delta, a
	// negative sequence from an idempotent producer (INVALID_RECORD).
	ErrInvalidRecord = errors.New("partition: invalid record batch")
	// ErrInvalidTxnState: a non-transactional batch from a producer whose
	// transaction is open on this partition (INVALID_TXN_STATE).
	ErrInvalidTxnState = errors.New("partition: non-transactional write while the producer's transaction is open")
	// ErrProducerFenced: a transaction marker with an epoch older than the
	// producer's current one.
	ErrProducerFenced = errors.New("partition: marker epoch is older than the producer's")
	// ErrClosed: the partition was closed or deleted.
	ErrClosed = errors.New("partition: closed")
)

// Config describes one partition to Open.
type Config struct {
	Topic string
	Index int32
	FS    logstore.FS
	// Dir is the log's directory; SnapshotPath the producer-state snapshot
	// (kept outside Dir so the log owns its directory alone).
	Dir          string
	SnapshotPath string
	Log          logstore.Config
	// LogAppendTime stamps batches with the broker's clock
	// (message.timestamp.type=LogAppendTime).
	LogAppendTime bool
	// ProducerExpiration forgets an idempotent producer's state this long
	// after its last write (producer.id.expiration.ms); 0 means never.
	ProducerExpiration time.Duration
	Now                func() time.Time
	Logger             *slog.Logger
}

// Partition is one open partition. All methods are safe for concurrent use.
type Partition struct {
	topic string
	index int32
	cfg   Config
	log   *logstore.Log
	lg    *slog.Logger

	// snapMu serialises snapshot writers (Snapshot, Close), so that an older
	// snapshot never overwrites a newer one. Lock order: snapMu, then mu.
	snapMu sync.Mutex
	// mu serialises appends so that sequence checks and the log's offset
	// order agree; it guards producers, changes, snapChanges, snapEnd and
	// closed.
	mu          sync.Mutex
	producers   producers
	ongoing     map[int64]int64 // producer id → first offset of its open transaction here
	aborted     []AbortedTxn    // ascending by LastOffset (marker offset)
	changes     uint64          // producer state changes so far
	snapChanges uint64          // changes the last snapshot covered (state is dirty while they differ)
	snapEnd     int64           // log end offset the last snapshot covered (-1: none)
	snapBytes   int64           // producedBytes when the last snapshot was written
	snapTime    time.Time       // when the last snapshot was written (or the partition opened)
	closed      bool

	damage atomic.Pointer[error] // damage a read found (see checkRead); nil: none

	wmu      sync.Mutex
	watchers map[chan<- struct{}]struct{} // wmu guards; signalled when the high watermark moves

	// Traffic since the partition was opened, for /metrics (the broker
	// sums them per topic at scrape time): plain atomics, so the produce
	// and fetch paths pay one add and no label lookup.
	producedBytes, producedRecords, fetchedBytes, fetchedRecords atomic.Int64

	kick   chan struct{} // an append happened; capacity 1
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // notifier exited
}

// AppendResult says where a batch is (or already was) in the log.
type AppendResult struct {
	BaseOffset, LastOffset int64
	// Duplicate is true when the batch was a retry of one already appended;
	// the offsets are the original ones and nothing was written.
	Duplicate bool
	// LogAppendTime is the broker timestamp for LogAppendTime topics, else -1.
	LogAppendTime int64
}

// Open opens the partition's log (recovering it) and rebuilds producer state.
func Open(cfg Config) (*Partition, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lg := cfg.Logger.With("topic", cfg.Topic, "partition", cfg.Index)
	if cfg.Log.Logger == nil {
		cfg.Log.Logger = lg
	}
	if cfg.Log.Now == nil {
		cfg.Log.Now = cfg.Now
	}
	l, err := logstore.Open(cfg.FS, cfg.Dir, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Index, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Partition{
		topic: cfg.Topic, index: cfg.Index, cfg: cfg, log: l, lg: lg,
		producers: producers{},
		ongoing:   map[int64]int64{},
		snapEnd:   -1,
		snapTime:  cfg.Now(),
		watchers:  map[chan<- struct{}]struct{}{},
		kick:      make(chan struct{}, 1),
		ctx:       ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	if err := p.recoverProducers(); err != nil {
		cancel()
		l.Close()
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Index, err)
	}
	go p.notifyLoop()
	return p, nil
}

// recoverProducers loads the snapshot if it is usable and replays the log
// after it. A snapshot that claims more of the log than survived (the tail was
// lost to a power loss) is ignored and the whole log is replayed.
func (p *Partition) recoverProducers() error {
	from := p.log.StartOffset()
	data, err := readFile(p.cfg.FS, p.cfg.SnapshotPath, 64<<20)
	if err == nil {
		ps, aborted, off, derr := decodeSnapshot(data)
		switch {
		case derr != nil:
			p.lg.Warn("ignoring damaged producer snapshot; replaying the whole log", "err", derr)
		case off > p.log.EndOffset():
			p.lg.Warn("producer snapshot is ahead of the recovered log; replaying the whole log", "snapshot_offset", off, "log_end", p.log.EndOffset())
		default:
			p.producers, p.aborted, from = ps, aborted, max(off, from)
			p.snapEnd = off
			for pid, e := range ps {
				if e.TxnFirst >= 0 {
					p.ongoing[pid] = e.TxnFirst
				}
			}
		}
	}
	now := p.cfg.Now().UnixMilli()
	replayed := 0
	err = p.log.Scan(from, func(h logstore.BatchHeader, batch []byte) error {
		if h.ProducerID < 0 || h.BaseOffset < from {
			return nil
		}
		replayed++
		if h.IsControl() && h.NumRecords == 0 {
			// A marker the cleaner emptied (its transaction is gone): it
			// still carries the producer's epoch.
			p.producers.entry(h.ProducerID, h.ProducerEpoch)
			return nil
		}
		if h.IsControl() {
			commit, ok := markerType(batch)
			if !ok {
				p.lg.Warn("unreadable transaction marker in the log; skipped", "offset", h.BaseOffset)
				return nil
			}
			p.applyMarkerLocked(h.ProducerID, h.ProducerEpoch, commit, h.BaseOffset)
			return nil
		}
		// Replayed entries are stamped with the recovery time rather than the
		// producer's timestamps, so a restart never shortens how long a
		// producer is deduplicated.
		p.applyDataLocked(h, lastSeqOf(h.BaseSequence, h.LastOffsetDelta), h.BaseOffset, h.LastOffset(), now)
		return nil
	})
	if err != nil {
		return fmt.Errorf("replaying producer state: %w", err)
	}
	// Dirty exactly when batches were replayed: a snapshot then saves the
	// next start this replay.
	p.snapChanges = p.changes
	if replayed > 0 {
		p.changes++
	}
	if replayed > 0 {
		p.lg.Debug("rebuilt producer state", "from_offset", from, "batches", replayed, "producers", len(p.producers))
	}
	return nil
}

// applyDataLocked records an appended data batch of an idempotent producer.
func (p *Partition) applyDataLocked(h logstore.BatchHeader, lastSeq int32, base, last, now int64) {
	p.producers.update(h.ProducerID, h.ProducerEpoch, batchMeta{
		FirstSeq: h.BaseSequence, LastSeq: lastSeq, FirstOffset: base, LastOffset: last,
	}, now)
	if h.IsTransactional() {
		if e := p.producers[h.ProducerID]; e.TxnFirst < 0 {
			e.TxnFirst = base
			p.ongoing[h.ProducerID] = base
		}
	}
	p.changes++
}

// applyMarkerLocked records a COMMIT or ABORT marker at offset: it ends the
// producer's open transaction here and, for an abort, indexes it.
func (p *Partition) applyMarkerLocked(pid int64, epoch int16, commit bool, offset int64) {
	e := p.producers.entry(pid, epoch)
	if e.TxnFirst >= 0 && !commit {
		p.aborted = append(p.aborted, AbortedTxn{ProducerID: pid, FirstOffset: e.TxnFirst, LastOffset: offset})
	}
	e.TxnFirst = -1
	delete(p.ongoing, pid)
	p.changes++
}

// markerType decodes the control record key of a marker batch: version int16,
// type int16 (0 = ABORT, 1 = COMMIT).
func markerType(batch []byte) (commit, ok bool) {
	if len(batch) <= logstore.BatchHeaderSize {
		return false, false
	}
	r := batch[logstore.BatchHeaderSize:]
	_, n := kbin.Varint(r) // record length
	if n == 0 || len(r) < n+1 {
		return false, false
	}
	r = r[n+1:]                         // attributes
	if _, n = kbin.Varlong(r); n == 0 { // timestamp delta
		return false, false
	}
	r = r[n:]
	if _, n = kbin.Varint(r); n == 0 { // offset delta
		return false, false
	}
	r = r[n:]
	klen, n := kbin.Varint(r)
	if n == 0 || klen < 4 || len(r) < n+int(klen) {
		return false, false
	}
	key := r[n:]
	switch binary.BigEndian.Uint16(key[2:]) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// Reconfigure applies a topic's changed settings (a dynamic topic config):
// the log's segment, roll and retention settings and whether batches are
// stamped with the broker's time.
func (p *Partition) Reconfigure(log logstore.Config, logAppendTime bool) {
	p.mu.Lock()
	p.cfg.LogAppendTime = logAppendTime
	p.mu.Unlock()
	p.log.Reconfigure(log)
}

// Topic and Index name the partition.
func (p *Partition) Topic() string { return p.topic }
func (p *Partition) Index() int32  { return p.index }

// HighWatermark is the offset below which records are durable and visible.
func (p *Partition) HighWatermark() int64 { return p.log.DurableOffset() }

// StartOffset is the log start offset.
func (p *Partition) StartOffset() int64 { return p.log.StartOffset() }

// EndOffset is the log end offset (written, maybe not yet durable).
func (p *Partition) EndOffset() int64 { return p.log.EndOffset() }

// LeaderEpoch is always 0: a single node is the only leader a partition ever
// has, so the epoch is stable across restarts without being persisted.
func (p *Partition) LeaderEpoch() int32 { return 0 }

// Err reports a failed fsync: the partition then accepts no more writes.
func (p *Partition) Err() error {
	if err := p.log.Err(); err != nil {
		return err
	}
	if d := p.damage.Load(); d != nil {
		return *d
	}
	return nil
}

// checkRead is the outcome of a read: damage found below the end of the
// log (a batch failing its CRC or out of sequence in a segment a start does
// not revalidate) takes the partition offline, as damage found at open
// does: Err reports it from then on, so produce and fetch answer
// KAFKA_STORAGE_ERROR, health and metrics show it, until an operator
// repairs it (idem storage check and repair) and restarts. The read is
// retried once first, so that only damage that stays is believed.
func (p *Partition) checkRead(data []byte, err error, again func() ([]byte, error)) ([]byte, error) {
	if !errors.Is(err, logstore.ErrCorrupt) {
		return data, err
	}
	if data, err = again(); !errors.Is(err, logstore.ErrCorrupt) {
		return data, err
	}
	if p.damage.CompareAndSwap(nil, &err) {
		p.lg.Error("partition offline: a read found damaged data below the end of its log; serving everything else",
			"topic", p.topic, "partition", p.index, "err", err, "inspect", "idem storage check (the broker stopped), then idem storage repair")
	}
	return nil, err
}

func (p *Partition) expired(e *producerEntry) bool {
	exp := p.cfg.ProducerExpiration
	return exp > 0 && p.cfg.Now().UnixMilli()-e.LastTime > exp.Milliseconds()
}

// Append validates a client's record batch, deduplicates it against the
// producer's recent batches and appends it. It returns after write(2); call
// WaitDurable(ctx, res.LastOffset+1) for acks=all. The batch is modified in
// place (offsets, leader epoch, and for LogAppendTime topics the timestamp).
func (p *Partition) Append(batch []byte) (AppendResult, error) {
	return p.append(batch, false)
}

// AppendSyncNow is Append for a caller that will wait for durability
// (acks=all): the log's fsync starts at once (logstore.Log.AppendSyncNow).
func (p *Partition) AppendSyncNow(batch []byte) (AppendResult, error) {
	return p.append(batch, true)
}

func (p *Partition) append(batch []byte, syncNow bool) (AppendResult, error) {
	h, err := logstore.ParseBatch(batch)
	if err != nil {
		return AppendResult{}, fmt.Errorf("%w: %v", ErrCorruptBatch, err)
	}
	switch {
	case h.IsControl():
		return AppendResult{}, fmt.Errorf("%w: clients may not write control batches", ErrInvalidRecord)
	case h.NumRecords < 1 || int64(h.LastOffsetDelta)+1 != int64(h.NumRecords):
		return AppendResult{}, fmt.Errorf("%w: %d records but last offset delta %d", ErrInvalidRecord, h.NumRecords, h.LastOffsetDelta)
	case h.ProducerID >= 0 && (h.BaseSequence < 0 || h.ProducerEpoch < 0):
		return AppendResult{}, fmt.Errorf("%w: idempotent batch with sequence %d epoch %d", ErrInvalidRecord, h.BaseSequence, h.ProducerEpoch)
	case h.IsTransactional() && h.ProducerID < 0:
		return AppendResult{}, fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
	}
	if h.Compression() == 0 {
		if err := validateRecords(batch, h.NumRecords); err != nil {
			return AppendResult{}, err
		}
	}
	lastSeq := lastSeqOf(h.BaseSequence, h.LastOffsetDelta)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return AppendResult{}, ErrClosed
	}
	if h.ProducerID >= 0 {
		dup, err := p.producers.check(h.ProducerID, h.ProducerEpoch, h.BaseSequence, lastSeq, p.expired)
		if err != nil {
			return AppendResult{}, err
		}
		if dup != nil {
			return AppendResult{BaseOffset: dup.FirstOffset, LastOffset: dup.LastOffset, Duplicate: true, LogAppendTime: -1}, nil
		}
		if _, open := p.ongoing[h.ProducerID]; open && !h.IsTransactional() {
			return AppendResult{}, ErrInvalidTxnState
		}
	}
	res := AppendResult{LogAppendTime: -1}
	// The broker owns PartitionLeaderEpoch (outside the CRC).
	binary.BigEndian.PutUint32(batch[12:], uint32(p.LeaderEpoch()))
	if p.cfg.LogAppendTime {
		now := p.cfg.Now().UnixMilli()
		attrs := binary.BigEndian.Uint16(batch[21:]) | 0x08
		binary.BigEndian.PutUint16(batch[21:], attrs)
		binary.BigEndian.PutUint64(batch[35:], uint64(now))
		logstore.FixCRC(batch)
		res.LogAppendTime = now
	}
	var info logstore.AppendInfo
	if syncNow {
		info, err = p.log.AppendSyncNow(batch)
	} else {
		info, err = p.log.Append(batch)
	}
	if err != nil {
		return AppendResult{}, err
	}
	res.BaseOffset, res.LastOffset = info.BaseOffset, info.LastOffset
	p.producedBytes.Add(int64(len(batch)))
	p.producedRecords.Add(int64(h.NumRecords))
	if h.ProducerID >= 0 {
		p.applyDataLocked(h, lastSeq, info.BaseOffset, info.LastOffset, p.cfg.Now().UnixMilli())
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return res, nil
}

// Traffic is what the partition took and served since it was opened:
// bytes and records of the batches appended by Append (duplicates, which
// write nothing, and transaction markers are not counted) and the record
// bytes and records CountFetched was told were sent to consumers.
func (p *Partition) Traffic() (producedBytes, producedRecords, fetchedBytes, fetchedRecords int64) {
	return p.producedBytes.Load(), p.producedRecords.Load(), p.fetchedBytes.Load(), p.fetchedRecords.Load()
}

// CountFetched adds n record batch bytes holding records records, sent to
// a consumer, to Traffic.
func (p *Partition) CountFetched(n, records int) {
	p.fetchedBytes.Add(int64(n))
	p.fetchedRecords.Add(int64(records))
}

// LastStableOffset is the first offset of the earliest open transaction, or
// the high watermark when none is open: read_committed consumers read below
// it.
func (p *Partition) LastStableOffset() int64 {
	hwm := p.log.DurableOffset()
	p.mu.Lock()
	defer p.mu.Unlock()
	lso := hwm
	for _, first := range p.ongoing {
		lso = min(lso, first)
	}
	return lso
}

// ReadCommitted is Read for read_committed consumers: it stops at the last
// stable offset.
func (p *Partition) ReadCommitted(offset int64, maxBytes int) ([]byte, error) {
	return p.ReadCommittedInto(nil, offset, maxBytes)
}

// ReadCommittedInto is ReadCommitted into buf's spare capacity
// (logstore.Log.ReadInto).
func (p *Partition) ReadCommittedInto(buf []byte, offset int64, maxBytes int) ([]byte, error) {
	read := func() ([]byte, error) { return p.log.ReadInto(buf, offset, maxBytes, p.LastStableOffset()) }
	data, err := read()
	return p.checkRead(data, err, read)
}

// AbortedTransactions lists the aborted transactions overlapping [from, to):
// those whose marker is at or after from and whose first offset is before
// to. A read_committed Fetch returns exactly these beside its batches.
func (p *Partition) AbortedTransactions(from, to int64) []AbortedTxn {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := sort.Search(len(p.aborted), func(i int) bool { return p.aborted[i].LastOffset >= from })
	var out []AbortedTxn
	for _, a := range p.aborted[i:] {
		if a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out
}

// ProducerState is one idempotent producer's state here (DescribeProducers).
type ProducerState struct {
	ProducerID     int64
	Epoch          int16
	LastSequence   int32 // -1 when only a marker was seen at this epoch
	LastTime       int64 // milliseconds of the last write
	TxnStartOffset int64 // -1 when no transaction is open
}

// ProducerStates lists the producers with live state, by producer id.
func (p *Partition) ProducerStates() []ProducerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ProducerState, 0, len(p.producers))
	for pid, e := range p.producers {
		st := ProducerState{ProducerID: pid, Epoch: e.Epoch, LastSequence: -1, LastTime: e.LastTime, TxnStartOffset: e.TxnFirst}
		if n := len(e.Batches); n > 0 {
			st.LastSequence = e.Batches[n-1].LastSeq
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProducerID < out[j].ProducerID })
	return out
}

// OngoingTxn is a transaction open on this partition.
type OngoingTxn struct {
	ProducerID  int64
	Epoch       int16
	FirstOffset int64
	LastTime    int64 // milliseconds of the producer's last write here
}

// OngoingTransactions lists the open transactions (DescribeProducers, the console).
func (p *Partition) OngoingTransactions() []OngoingTxn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []OngoingTxn
	for pid, first := range p.ongoing {
		e := p.producers[pid]
		out = append(out, OngoingTxn{ProducerID: pid, Epoch: e.Epoch, FirstOffset: first, LastTime: e.LastTime})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstOffset < out[j].FirstOffset })
	return out
}

// WriteMarker appends a COMMIT or ABORT control batch for pid/epoch, ends the
// producer's open transaction here (indexing it if aborted) and returns once
// the marker is fsynced. A marker for a producer with no open transaction
// here is still written, as Kafka does. An epoch older than the producer's
// is ErrProducerFenced.
func (p *Partition) WriteMarker(ctx context.Context, pid int64, epoch int16, commit bool, coordinatorEpoch int32) (int64, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if e := p.producers[pid]; e != nil && epoch < e.Epoch {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: marker epoch %d, producer epoch %d", ErrProducerFenced, epoch, e.Epoch)
	}
	b := markerBatch(pid, epoch, commit, coordinatorEpoch, p.cfg.Now().UnixMilli())
	// A marker may draw on the disk reserve: on a full disk the transaction
	// must still end, or the last stable offset would stall until space
	// returns.
	info, err := p.log.AppendUsingReserve(b)
	if err != nil {
		p.mu.Unlock()
		return 0, err
	}
	p.applyMarkerLocked(pid, epoch, commit, info.BaseOffset)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	if err := p.log.WaitDurable(ctx, info.LastOffset+1); err != nil {
		return 0, err
	}
	return info.BaseOffset, nil
}

// markerBatch builds a control batch holding one marker record (kafka-protocol
// §3.3): key = version 0, type (0 abort, 1 commit); value = version 0,
// coordinator epoch.
func markerBatch(pid int64, epoch int16, commit bool, coordinatorEpoch int32, now int64) []byte {
	typ := uint16(0)
	if commit {
		typ = 1
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ)
	val := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), uint32(coordinatorEpoch))
	var body []byte
	body = append(body, 0)             // attributes
	body = kbin.AppendVarlong(body, 0) // timestamp delta
	body = kbin.AppendVarint(body, 0)  // offset delta
	body = kbin.AppendVarint(body, int32(len(key)))
	body = append(body, key...)
	body = kbin.AppendVarint(body, int32(len(val)))
	body = append(body, val...)
	body = kbin.AppendVarint(body, 0) // headers
	rec := kbin.AppendVarint(nil, int32(len(body)))
	rec = append(rec, body...)

	be := binary.BigEndian
	b := make([]byte, logstore.BatchHeaderSize, logstore.BatchHeaderSize+len(rec))
	be.PutUint32(b[8:], uint32(logstore.BatchHeaderSize-12+len(rec)))
	be.PutUint32(b[12:], 0) // leader epoch
	b[16] = 2
	be.PutUint16(b[21:], 0x30) // transactional | control
	be.PutUint32(b[23:], 0)    // last offset delta
	be.PutUint64(b[27:], uint64(now))
	be.PutUint64(b[35:], uint64(now))
	be.PutUint64(b[43:], uint64(pid))
	be.PutUint16(b[51:], uint16(epoch))
	be.PutUint32(b[53:], 0xffffffff) // base sequence -1
	be.PutUint32(b[57:], 1)
	b = append(b, rec...)
	logstore.FixCRC(b)
	return b
}

// WaitDurable returns once every offset below end is fsynced.
func (p *Partition) WaitDurable(ctx context.Context, end int64) error {
	return p.log.WaitDurable(ctx, end)
}

// Read returns whole batches from the one containing offset, stopping at the
// high watermark. An offset between the high watermark and the log end is
// valid and reads nothing; outside [log start, log end] it is
// logstore.ErrOffsetOutOfRange.
func (p *Partition) Read(offset int64, maxBytes int) ([]byte, error) {
	return p.ReadInto(nil, offset, maxBytes)
}

// ReadInto is Read into buf's spare capacity (logstore.Log.ReadInto).
func (p *Partition) ReadInto(buf []byte, offset int64, maxBytes int) ([]byte, error) {
	read := func() ([]byte, error) { return p.log.ReadInto(buf, offset, maxBytes, p.log.DurableOffset()) }
	data, err := read()
	return p.checkRead(data, err, read)
}

// OffsetForTime is the first visible offset whose batch has a timestamp >= ts.
func (p *Partition) OffsetForTime(ts int64) (int64, bool, error) {
	off, ok, err := p.log.OffsetForTime(ts)
	if err != nil || !ok || off >= p.HighWatermark() {
		return -1, false, err
	}
	return off, true, nil
}

// MaxTimestamp is the largest timestamp among visible batches and the offset
// of a batch carrying it.
func (p *Partition) MaxTimestamp() (ts, offset int64, ok bool, err error) {
	ts, offset, ok, err = p.log.MaxTimestamp()
	if err != nil || !ok || offset >= p.HighWatermark() {
		return -1, -1, false, err
	}
	return ts, offset, true, nil
}

// DeleteRecords advances the log start offset to offset (DeleteRecords):
// records below it are no longer served. offset -1 means the high watermark;
// an offset above the high watermark is logstore.ErrOffsetOutOfRange. The new
// start is durable when it returns. It returns the new log start offset.
func (p *Partition) DeleteRecords(offset int64) (int64, error) {
	hwm := p.log.DurableOffset()
	if offset == -1 {
		offset = hwm
	}
	if offset < 0 || offset > hwm {
		return 0, fmt.Errorf("%w: %d is not in [0, high watermark %d]", logstore.ErrOffsetOutOfRange, offset, hwm)
	}
	if err := p.log.DeleteBefore(offset); err != nil {
		return 0, err
	}
	return p.log.StartOffset(), nil
}

// EnforceRetention deletes segments past the retention limits.
func (p *Partition) EnforceRetention() error { return p.log.EnforceRetention() }

// Watch registers ch to receive a non-blocking send whenever the high
// watermark advances; call the returned function to unregister.
func (p *Partition) Watch(ch chan<- struct{}) (stop func()) {
	p.wmu.Lock()
	p.watchers[ch] = struct{}{}
	p.wmu.Unlock()
	return func() {
		p.wmu.Lock()
		delete(p.watchers, ch)
		p.wmu.Unlock()
	}
}

func (p *Partition) broadcast() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for ch := range p.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// notifyLoop turns appends into high-watermark notifications: after each burst
// of appends it waits for the fsync covering them (sharing it with acks=all
// waiters) and wakes the watchers. For acks=1 writes this wait is also what
// gets them fsynced promptly.
func (p *Partition) notifyLoop() {
	defer close(p.done)
	for {
		select {
		case <-p.kick:
		case <-p.ctx.Done():
			return
		}
		end := p.log.EndOffset()
		if err := p.log.WaitDurable(p.ctx, end); err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.lg.Error("partition cannot make writes durable", "err", err)
		}
		p.broadcast()
	}
}

// Snapshot writes the producer state if it changed since the last snapshot.
// It encodes the state under the append lock, so the state matches the log
// end offset exactly, then waits for that offset to be durable and writes
// the file without the lock, so the snapshot stays usable after a power loss
// and producers do not wait for its fsyncs.
func (p *Partition) Snapshot() error {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil // Close took the last one
	}
	snap, ok := p.encodeSnapshotLocked()
	p.mu.Unlock()
	if !ok {
		return nil
	}
	// Waiting for the fsync and writing the file (write, fsync, rename,
	// directory fsync: milliseconds) happen outside mu, so producers are not
	// stalled by a snapshot: appends after snap.end do not change it.
	if err := p.writeSnapshot(snap); err != nil {
		return err
	}
	p.mu.Lock()
	p.snapshotWrittenLocked(snap)
	p.mu.Unlock()
	return nil
}

// SnapshotIfDue is Snapshot for the periodic maintenance: it writes the
// producer state only when it changed and either minBytes were appended
// since the last snapshot or that snapshot is maxAge old. A snapshot bounds
// what a start after a crash replays, and it costs a file written and
// fsynced twice: a busy partition is snapshotted often, one that takes a
// few records now and then is not, so ten thousand quiet partitions do not
// keep the disk busy with snapshots (they replay at most maxAge of their
// few writes after a crash).
func (p *Partition) SnapshotIfDue(minBytes int64, maxAge time.Duration) error {
	p.mu.Lock()
	dirty := p.changes != p.snapChanges || p.log.EndOffset() != p.snapEnd
	due := dirty && (p.producedBytes.Load()-p.snapBytes >= minBytes || p.cfg.Now().Sub(p.snapTime) >= maxAge)
	p.mu.Unlock()
	if !due {
		return nil
	}
	return p.Snapshot()
}

// producerSnapshot is producer state encoded as of a log end offset.
type producerSnapshot struct {
	end     int64
	data    []byte
	changes uint64 // p.changes when it was encoded
}

// encodeSnapshotLocked encodes the producer state as of the current log
// end, or reports false when the last snapshot already covers it. A
// snapshot is due whenever the log grew, even with no producer state to
// keep: it records how far a restart may skip replaying, so a plain acks=1
// workload does not make every start reread the log.
func (p *Partition) encodeSnapshotLocked() (producerSnapshot, bool) {
	end := p.log.EndOffset()
	if p.changes == p.snapChanges && end == p.snapEnd {
		return producerSnapshot{}, false
	}
	p.pruneLocked()
	return producerSnapshot{end: end, data: p.producers.encode(end, p.aborted), changes: p.changes}, true
}

// writeSnapshot waits until everything the snapshot covers is fsynced, then
// writes it atomically. A snapshot that claimed un-fsynced batches would be
// ignored after a power loss, forcing a full replay.
func (p *Partition) writeSnapshot(snap producerSnapshot) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := p.log.WaitDurable(ctx, snap.end)
	cancel()
	if err != nil {
		return fmt.Errorf("partition %s-%d: producer snapshot: %w", p.topic, p.index, err)
	}
	if err := p.cfg.Log.Disk.Do(func() error {
		return writeFileAtomic(p.cfg.FS, p.cfg.SnapshotPath, snap.data)
	}); err != nil {
		return fmt.Errorf("partition %s-%d: producer snapshot: %w", p.topic, p.index, err)
	}
	return nil
}

// snapshotWrittenLocked records that snap is on disk: later starts replay
// from snap.end, and the state is clean unless it changed meanwhile.
func (p *Partition) snapshotWrittenLocked(snap producerSnapshot) {
	p.snapEnd = snap.end
	p.snapChanges = snap.changes
	p.snapBytes, p.snapTime = p.producedBytes.Load(), p.cfg.Now()
}

// pruneLocked forgets expired producers (never one with an open
// transaction: that would unblock the LSO) and aborted transactions that
// retention has removed from the log.
func (p *Partition) pruneLocked() {
	for pid, e := range p.producers {
		if e.TxnFirst < 0 && p.expired(e) {
			delete(p.producers, pid)
		}
	}
	start := p.log.StartOffset()
	i := sort.Search(len(p.aborted), func(i int) bool { return p.aborted[i].LastOffset >= start })
	p.aborted = append([]AbortedTxn(nil), p.aborted[i:]...)
}

// SizeBytes is the size of the partition's segment files (indexes excluded),
// read from the file system; it is for metrics and admin listings.
func (p *Partition) SizeBytes() int64 {
	names, err := p.cfg.FS.ReadDir(p.cfg.Dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			if sz, err := p.cfg.FS.Stat(path.Join(p.cfg.Dir, n)); err == nil {
				total += sz
			}
		}
	}
	return total
}

// Producers returns how many producers have live state here.
func (p *Partition) Producers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.producers)
}

// Close snapshots producer state, fsyncs and closes the log, and stops the
// notifier.
func (p *Partition) Close() error {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var snapErr error
	if snap, ok := p.encodeSnapshotLocked(); ok {
		// Closing: no append can come, so holding mu costs nothing.
		if snapErr = p.writeSnapshot(snap); snapErr == nil {
			p.snapshotWrittenLocked(snap)
		}
	}
	p.mu.Unlock()
	p.cancel()
	<-p.done
	err := p.log.Close()
	p.broadcast() // wake long-polls so they notice
	return errors.Join(err, snapErr)
}
