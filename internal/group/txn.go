package group

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/statelog"
)

// Transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447).
//
// Offsets committed inside a transaction stay pending, invisible to
// OffsetFetch, until the transaction coordinator completes the transaction
// with CompleteTxnOffsets. Both steps are records in the offsets log, in
// Kafka's format: the pending offsets are a transactional batch carrying the
// producer id and epoch, the completion a control batch (COMMIT or ABORT
// marker) for that producer. A marker completes the producer's pending
// offsets in every group: a producer has one transaction at a time, and
// replay must give the same answer as memory.

// pendingTxn is one producer's pending offsets in one group.
type pendingTxn struct {
	epoch   int16
	offsets map[TopicPartition]Offset
}

func (g *group) addPendingLocked(pid int64, epoch int16, tp TopicPartition, o Offset) {
	p := g.pendingTxn[pid]
	if p == nil {
		p = &pendingTxn{offsets: map[TopicPartition]Offset{}}
		g.pendingTxn[pid] = p
	}
	p.epoch = epoch
	p.offsets[tp] = o
}

// completeTxnLocked commits or drops pid's pending offsets in every group.
// A committed pending offset replaces the committed one unless that was
// written later (an ordinary commit after the transactional one wins, as in
// Kafka).
func (c *Coordinator) completeTxnLocked(pid int64, commit bool) {
	for _, g := range c.groups {
		p := g.pendingTxn[pid]
		if p == nil {
			continue
		}
		if commit {
			for tp, o := range p.offsets {
				if cur, ok := g.offsets[tp]; !ok || cur.pos < o.pos {
					g.offsets[tp] = o
				}
			}
		}
		delete(g.pendingTxn, pid)
	}
}

// TxnCommitRequest is a TxnOffsetCommit. Generation is -1 and MemberID empty
// for v0–2, which carry no group membership.
type TxnCommitRequest struct {
	Group         string
	ProducerID    int64
	ProducerEpoch int16
	MemberID      string
	InstanceID    string
	Generation    int32
	Offsets       []OffsetCommit
}

// TxnOffsetCommit stores offsets as pending for the producer until
// CompleteTxnOffsets, and returns once they are durable. It creates the group
// if needed. With member information (v3+, KIP-447) the member and generation
// are checked like OffsetCommit's; unlike OffsetCommit, a commit during
// CompletingRebalance is accepted, and one without member information is
// accepted even while the group has members (older clients send none).
func (c *Coordinator) TxnOffsetCommit(ctx context.Context, req TxnCommitRequest) ([]error, error) {
	if req.Group == "" {
		return nil, ErrInvalidGroupID
	}
	now := c.now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	g := c.groups[req.Group]
	if g == nil {
		g = c.newGroupLocked(req.Group, now)
	}
	if g.consumer != nil {
		if _, err := g.consumer.validateCommitLocked(req.MemberID, req.Generation, true, true, nil); err != nil {
			c.mu.Unlock()
			return nil, err
		}
	} else if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != "" {
		m, err := g.validateMemberLocked(req.MemberID, req.InstanceID)
		if err == nil && req.Generation != g.generation {
			err = ErrIllegalGeneration
		}
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		m.deadline = now.Add(m.sessionTimeout)
	}
	errs := make([]error, len(req.Offsets))
	var recs []statelog.Record
	var apply []OffsetCommit
	for i, o := range req.Offsets {
		if len(o.Metadata) > c.cfg.MaxMetadataBytes {
			errs[i] = ErrOffsetMetadataTooLarge
			continue
		}
		tp := TopicPartition{o.Topic, o.Partition}
		recs = append(recs, offsetRecord(g.id, tp, Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now}))
		apply = append(apply, o)
	}
	end, err := c.appendAsLocked(statelog.Batch{Transactional: true, ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch}, recs)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	base := end - int64(len(recs))
	for i, o := range apply {
		g.addPendingLocked(req.ProducerID, req.ProducerEpoch, TopicPartition{o.Topic, o.Partition},
			Offset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: now, pos: base + int64(i)})
	}
	c.mu.Unlock()
	if err := c.waitDurable(ctx, end); err != nil {
		return nil, err
	}
	return errs, nil
}

// CompleteTxnOffsets makes the producer's pending transactional offsets
// visible (commit) or drops them (abort), durably, by writing a transaction
// marker to the offsets log. It completes the producer's offsets in every
// group (group names the one the caller is finishing; the rest would be next)
// and is idempotent: with nothing pending it only waits until earlier
// completions are durable.
func (c *Coordinator) CompleteTxnOffsets(ctx context.Context, group string, pid int64, epoch int16, commit bool) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	pending := false
	for _, g := range c.groups {
		if g.pendingTxn[pid] != nil {
			pending = true
			break
		}
	}
	var end int64
	var err error
	if pending {
		typ := kmsg.ControlRecordKeyTypeAbort
		if commit {
			typ = kmsg.ControlRecordKeyTypeCommit
		}
		key := kmsg.ControlRecordKey{Version: 0, Type: typ}
		val := kmsg.EndTxnMarker{Version: 0}
		end, err = c.appendAsLocked(statelog.Batch{Transactional: true, Control: true, ProducerID: pid, ProducerEpoch: epoch},
			[]statelog.Record{{Key: key.AppendTo(nil), Value: val.AppendTo(nil)}})
		if err == nil {
			c.completeTxnLocked(pid, commit)
		}
	} else {
		end = c.log.End()
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitDurable(ctx, end)
}
