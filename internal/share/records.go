package share

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/idem-dev/idem/internal/statelog"
)

// The share log's records. Keys start with an int16 record type, values with
// an int16 version (0 for all of them so far); a nil value is a tombstone.
// The layout is idem's own (Kafka's __share_group_state is a separate
// inter-broker service with its own persister RPCs, which one node does not
// need), but it carries the same facts: per share-partition the start
// offset and the non-default record states, as whole snapshots or deltas.
const (
	// rtConfig: dynamic configs of one resource (a group, or the broker).
	// key: type, int8 resource type, string name.
	// value: version, int32 n, n × (string name, string value).
	rtConfig int16 = 1
	// rtGroup: a share group exists. key: type, string group.
	// value: version, int32 group epoch.
	rtGroup int16 = 2
	// recState: one share-partition's state. key: type, string group,
	// [16]byte topic id, int32 partition. value: version, int8 full,
	// int64 start offset, int32 n, n × run. A full record replaces the
	// state; a delta moves the start offset forward and overwrites the runs.
	rtState int16 = 3
	// rtDLQ: one record on its way to the dead-letter topic. key: type,
	// string group, [16]byte topic id, int32 partition, int64 offset.
	// value: see dlqEntry.encode.
	rtDLQ int16 = 4
	// rtProducer: the broker-owned producer id of dead-letter writes.
	// key: type. value: version, int64 producer id, int16 epoch.
	rtProducer int16 = 5
	// rtSeq: the next sequence of dead-letter writes to one partition.
	// key: type, [16]byte topic id, int32 partition. value: version, int32.
	rtSeq int16 = 6
	// rtMember: a member of a share group. key: type, string group,
	// string member id. value: version, int32 epoch, int32 previous epoch,
	// int64 join order, string client id, string host, int8 has rack,
	// string rack, int32 n, n × string subscribed topic.
	rtMember int16 = 7
)

// Resource types of rtConfig, Kafka's ConfigResourceType numbers.
const (
	ResourceBroker int8 = 4
	ResourceGroup  int8 = 32
)

var errCorruptRecord = errors.New("share: corrupt record")

// run is a stretch of consecutive offsets in one state.
type run struct {
	first, last int64
	state       recState
	count       int16
	availAt     int64 // unix ms from which an Available record may be acquired; 0 at once
}

// enc appends big-endian fields.
type enc struct{ b []byte }

func (e *enc) i8(v int8)   { e.b = append(e.b, byte(v)) }
func (e *enc) i16(v int16) { e.b = binary.BigEndian.AppendUint16(e.b, uint16(v)) }
func (e *enc) i32(v int32) { e.b = binary.BigEndian.AppendUint32(e.b, uint32(v)) }
func (e *enc) i64(v int64) { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *enc) id(v [16]byte) {
	e.b = append(e.b, v[:]...)
}
func (e *enc) str(s string) {
	e.i16(int16(len(s)))
	e.b = append(e.b, s...)
}

// dec reads what enc wrote; the first short read sets err and every later
// read returns zero.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		if d.err == nil {
			d.err = errCorruptRecord
		}
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) i8() int8 {
	if b := d.take(1); b != nil {
		return int8(b[0])
	}
	return 0
}

func (d *dec) i16() int16 {
	if b := d.take(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (d *dec) i32() int32 {
	if b := d.take(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (d *dec) i64() int64 {
	if b := d.take(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

func (d *dec) id() (v [16]byte) {
	if b := d.take(16); b != nil {
		copy(v[:], b)
	}
	return v
}

func (d *dec) str() string {
	n := d.i16()
	return string(d.take(int(n)))
}

// count reads an element count and checks that the rest of the record can
// hold that many elements of at least min bytes each, so a corrupt count
// cannot make replay allocate without bound.
func (d *dec) count(min int) int {
	n := d.i32()
	if d.err == nil && (n < 0 || int(n)*min > len(d.b)) {
		d.err = errCorruptRecord
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorruptRecord, len(d.b))
	}
	return d.err
}

func configKey(resType int8, name string) []byte {
	e := enc{}
	e.i16(rtConfig)
	e.i8(resType)
	e.str(name)
	return e.b
}

func configRecord(resType int8, name string, kv map[string]string) statelog.Record {
	r := statelog.Record{Key: configKey(resType, name)}
	if kv == nil {
		return r
	}
	e := enc{}
	e.i16(0)
	e.i32(int32(len(kv)))
	for _, k := range sortedKeys(kv) {
		e.str(k)
		e.str(kv[k])
	}
	r.Value = e.b
	return r
}

func groupRecord(id string, epoch int32, deleted bool) statelog.Record {
	e := enc{}
	e.i16(rtGroup)
	e.str(id)
	r := statelog.Record{Key: e.b}
	if deleted {
		return r
	}
	v := enc{}
	v.i16(0)
	v.i32(epoch)
	r.Value = v.b
	return r
}

func stateKey(group string, tp topicPartition) []byte {
	e := enc{}
	e.i16(rtState)
	e.str(group)
	e.id(tp.id)
	e.i32(tp.partition)
	return e.b
}

// stateRecord is a full or delta state record; nil runs and deleted make a
// tombstone.
func stateRecord(group string, tp topicPartition, full bool, spso int64, runs []run, deleted bool) statelog.Record {
	r := statelog.Record{Key: stateKey(group, tp)}
	if deleted {
		return r
	}
	e := enc{b: make([]byte, 0, 15+len(runs)*27)}
	e.i16(0)
	if full {
		e.i8(1)
	} else {
		e.i8(0)
	}
	e.i64(spso)
	e.i32(int32(len(runs)))
	for _, rn := range runs {
		e.i64(rn.first)
		e.i64(rn.last)
		e.i8(int8(rn.state))
		e.i16(rn.count)
		e.i64(rn.availAt)
	}
	r.Value = e.b
	return r
}

func decodeState(v []byte) (full bool, spso int64, runs []run, err error) {
	d := dec{b: v}
	if ver := d.i16(); ver != 0 && d.err == nil {
		return false, 0, nil, fmt.Errorf("%w: state version %d", statelog.ErrUnknownRecord, ver)
	}
	full = d.i8() == 1
	spso = d.i64()
	// Offsets are never negative; refusing a negative start also keeps
	// rn.last-spso below from overflowing (a start of -2^63 made any run
	// look short, and replay grew a window of 2^63 records).
	if d.err == nil && spso < 0 {
		return false, 0, nil, fmt.Errorf("%w: share-partition start offset %d", errCorruptRecord, spso)
	}
	n := d.count(27)
	runs = make([]run, 0, n)
	for range n {
		rn := run{first: d.i64(), last: d.i64(), state: recState(d.i8()), count: d.i16(), availAt: d.i64()}
		// A run lies in the window [spso, spso+maxWindow): a corrupt
		// record cannot make replay allocate a window without bound.
		if d.err == nil && (rn.first > rn.last || rn.first < spso || rn.state > stArchived || rn.last-spso >= maxWindow) {
			d.err = fmt.Errorf("%w: run %d-%d state %d", errCorruptRecord, rn.first, rn.last, rn.state)
		}
		runs = append(runs, rn)
	}
	return full, spso, runs, d.done()
}

func producerRecord(pid int64, epoch int16) statelog.Record {
	k := enc{}
	k.i16(rtProducer)
	v := enc{}
	v.i16(0)
	v.i64(pid)
	v.i16(epoch)
	return statelog.Record{Key: k.b, Value: v.b}
}

func seqRecord(tp topicPartition, next int32) statelog.Record {
	k := enc{}
	k.i16(rtSeq)
	k.id(tp.id)
	k.i32(tp.partition)
	v := enc{}
	v.i16(0)
	v.i32(next)
	return statelog.Record{Key: k.b, Value: v.b}
}

func dlqKey(group string, tp topicPartition, offset int64) []byte {
	e := enc{}
	e.i16(rtDLQ)
	e.str(group)
	e.id(tp.id)
	e.i32(tp.partition)
	e.i64(offset)
	return e.b
}

func memberRecord(group string, m *member, deleted bool) statelog.Record {
	k := enc{}
	k.i16(rtMember)
	k.str(group)
	k.str(m.id)
	r := statelog.Record{Key: k.b}
	if deleted {
		return r
	}
	v := enc{}
	v.i16(0)
	v.i32(m.epoch)
	v.i32(m.prevEpoch)
	v.i64(int64(m.joinSeq))
	v.str(m.clientID)
	v.str(m.host)
	if m.rack != nil {
		v.i8(1)
		v.str(*m.rack)
	} else {
		v.i8(0)
		v.str("")
	}
	v.i32(int32(len(m.subscribed)))
	for _, t := range m.subscribed {
		v.str(t)
	}
	r.Value = v.b
	return r
}

func decodeMember(id string, value []byte) (*member, error) {
	d := dec{b: value}
	if ver := d.i16(); ver != 0 && d.err == nil {
		return nil, fmt.Errorf("%w: member version %d", statelog.ErrUnknownRecord, ver)
	}
	m := &member{id: id, epoch: d.i32(), prevEpoch: d.i32(), joinSeq: uint64(d.i64()), clientID: d.str(), host: d.str()}
	hasRack := d.i8() == 1
	rack := d.str()
	if hasRack {
		m.rack = &rack
	}
	n := d.count(2)
	for range n {
		m.subscribed = append(m.subscribed, d.str())
	}
	return m, d.done()
}
