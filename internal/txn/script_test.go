package txn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/idem-dev/idem/internal/testkit"
)

// TestScripts runs the coordinator's specification, testdata/*.txt, with
// github.com/cockroachdb/datadriven (the group package's scripts use the
// same runner and error names). Each block is a command, a "----" line and
// what it printed, up to a blank line; # starts a comment. Run with
// -rewrite to regenerate the output after a deliberate change, then read
// the diff. The clock is fake and timers run only on "tick"; markers and
// offset completions are recorded, not written.
//
// Commands (an id's requests carry its current producer id and epoch):
//
//	init ID [timeout=DUR] [expect=PID/EPOCH]   InitProducerId: "ok pid=N epoch=N"
//	add ID T/P…                                AddPartitionsToTxn
//	offsets ID GROUP                           AddOffsetsToTxn
//	commit ID | abort ID                       EndTxn (transaction version 1)
//	commit2 ID | abort2 ID                     EndTxnV2 (transaction version 2): "ok pid=N epoch=N",
//	                                           and later commands use that id and epoch
//	add2 ID T/P… | offsets2 ID GROUP           the implicit adds of Produce v12 / TxnOffsetCommit v5
//	late ID EPOCH                              later commands of ID use this epoch (a
//	                                           request of an earlier transaction, delivered late)
//	set-epoch ID EPOCH                         jump the stored epoch (as if that many bumps happened)
//	verify ID T/P                              Verify (the Produce check)
//	describe ID                                DescribeTransactions
//	advance DUR | tick | crash                 fake clock, timer pass, power loss
//	stale ID                                   later commands of ID use the producer
//	                                           id and epoch it had before its last init
//
// A command prints "ok" or its error by Kafka's name (what
// internal/kafka/api answers; COORDINATOR_NOT_AVAILABLE is qualified by
// which sentinel it was). Any command may end with checks, done in the
// order given once no completion is running:
//
//	state     "state: NAME" of the command's id (or of the last id named),
//	          "gone" if the coordinator does not know it
//	markers   every marker and offset-completion call since the last check,
//	          sorted, one a line ("markers: none" if there was none)
//	producer  "producer: pid=N epoch=N tv=V" as Describe shows it
func TestScripts(t *testing.T) {
	testkit.WalkScripts(t, "testdata", func(t *testing.T, path string) {
		s := &scriptRun{e: newEnv(t), cur: map[string]ProducerIDEpoch{}, prev: map[string]ProducerIDEpoch{}}
		datadriven.RunTest(t, path, s.run)
	})
}

// kafkaNames names the sentinels as internal/kafka/api answers them.
var kafkaNames = []struct {
	err  error
	name string
}{
	{ErrProducerFenced, "PRODUCER_FENCED"},
	{ErrConcurrentTransactions, "CONCURRENT_TRANSACTIONS"},
	{ErrInvalidTxnState, "INVALID_TXN_STATE"},
	{ErrInvalidProducerIDMapping, "INVALID_PRODUCER_ID_MAPPING"},
	{ErrInvalidTransactionTimeout, "INVALID_TRANSACTION_TIMEOUT"},
	{ErrInvalidProducerEpoch, "INVALID_PRODUCER_EPOCH"},
	{ErrTransactionalIDNotFound, "TRANSACTIONAL_ID_NOT_FOUND"},
	{ErrInvalidRequest, "INVALID_REQUEST"},
	{ErrClosed, "COORDINATOR_NOT_AVAILABLE(closed)"},
	{ErrStorage, "COORDINATOR_NOT_AVAILABLE(storage)"},
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	for _, n := range kafkaNames {
		if errors.Is(err, n.err) {
			return n.name
		}
	}
	return err.Error()
}

// scriptRun is one script's coordinator and what the script remembers.
type scriptRun struct {
	e         *env
	cur, prev map[string]ProducerIDEpoch
	lastID    string // commands without an id (tick, advance, crash) check this one
}

func (s *scriptRun) run(t *testing.T, d *datadriven.TestData) string {
	e, ctx := s.e, context.Background()
	var args, checks []string
	for _, a := range d.CmdArgs {
		switch {
		case len(a.Vals) == 0 && (a.Key == "state" || a.Key == "markers" || a.Key == "producer"):
			checks = append(checks, a.Key)
		case len(a.Vals) == 0:
			args = append(args, strings.Trim(a.Key, `"`))
		}
	}
	id := s.lastID
	if len(args) > 0 && d.Cmd != "advance" {
		id = args[0]
		s.lastID = id
	}
	cur := s.cur[id]
	var err error
	out := ""
	switch d.Cmd {
	case "init":
		timeout, expect := time.Minute, NoProducer
		if d.HasArg("timeout") {
			var v string
			d.ScanArgs(t, "timeout", &v)
			timeout = mustDuration(t, v)
		}
		if d.HasArg("expect") {
			var v string
			d.ScanArgs(t, "expect", &v)
			p, ep, _ := strings.Cut(v, "/")
			expect = ProducerIDEpoch{mustInt(t, p), int16(mustInt(t, ep))}
		}
		var got ProducerIDEpoch
		got, err = e.c.InitProducerID(ctx, id, timeout, expect)
		if err == nil {
			s.prev[id], s.cur[id] = s.cur[id], got
			out = fmt.Sprintf(" pid=%d epoch=%d", got.ProducerID, got.Epoch)
		}
	case "add":
		var tps []TopicPartition
		for _, a := range args[1:] {
			tps = append(tps, parseTP(t, a))
		}
		err = e.c.AddPartitions(ctx, id, cur.ProducerID, cur.Epoch, tps)
	case "offsets":
		err = e.c.AddOffsets(ctx, id, cur.ProducerID, cur.Epoch, args[1])
	case "commit", "abort":
		err = e.c.EndTxn(ctx, id, cur.ProducerID, cur.Epoch, d.Cmd == "commit")
	case "commit2", "abort2":
		var got ProducerIDEpoch
		got, err = e.c.EndTxnV2(ctx, id, cur.ProducerID, cur.Epoch, d.Cmd == "commit2")
		if err == nil {
			s.prev[id], s.cur[id] = s.cur[id], got
			out = fmt.Sprintf(" pid=%d epoch=%d", got.ProducerID, got.Epoch)
		}
	case "add2":
		var tps []TopicPartition
		for _, a := range args[1:] {
			tps = append(tps, parseTP(t, a))
		}
		err = e.c.AddPartitionsImplicit(ctx, id, cur.ProducerID, cur.Epoch, tps)
	case "offsets2":
		err = e.c.AddOffsetsImplicit(ctx, id, cur.ProducerID, cur.Epoch, args[1])
	case "late":
		s.cur[id] = ProducerIDEpoch{cur.ProducerID, int16(mustInt(t, args[1]))}
	case "set-epoch":
		e.c.mu.Lock()
		st := e.c.txns[id].s.clone()
		st.epoch = int16(mustInt(t, args[1]))
		if _, err := e.c.writeLocked(id, &st); err != nil {
			t.Fatal(err)
		}
		e.c.mu.Unlock()
		s.cur[id] = ProducerIDEpoch{st.pid, st.epoch}
	case "verify":
		tp := parseTP(t, args[1])
		err = e.c.Verify(cur.ProducerID, cur.Epoch, tp.Topic, tp.Partition)
	case "describe":
		_, err = e.c.Describe(id)
	case "advance":
		e.clock.Advance(mustDuration(t, args[0]))
	case "tick":
		e.c.tick()
	case "crash":
		// Markers the restart re-sends (a Complete record not yet
		// fsynced) are not part of the scripts; durability_test.go pins
		// them down.
		e.waitIdle()
		e.crash()
		e.waitIdle()
		e.rec.take()
	case "stale":
		s.cur[id] = s.prev[id]
	default:
		t.Fatalf("%s: unknown command %s", d.Pos, d.Cmd)
	}
	var b strings.Builder
	b.WriteString(errName(err) + out + "\n")
	for _, c := range checks {
		e.waitIdle()
		switch c {
		case "state":
			info, err := e.c.Describe(id)
			state := info.State.String()
			if errors.Is(err, ErrTransactionalIDNotFound) {
				state = "gone"
			} else if err != nil {
				t.Fatalf("%s: Describe: %v", d.Pos, err)
			}
			fmt.Fprintf(&b, "state: %s\n", state)
		case "producer":
			info, err := e.c.Describe(id)
			if err != nil {
				t.Fatalf("%s: Describe: %v", d.Pos, err)
			}
			fmt.Fprintf(&b, "producer: pid=%d epoch=%d tv=%d\n", info.ProducerID, info.ProducerEpoch, info.TransactionVersion)
		case "markers":
			ms := e.rec.take()
			if len(ms) == 0 {
				b.WriteString("markers: none\n")
				continue
			}
			b.WriteString("markers:\n")
			for _, m := range ms {
				fmt.Fprintf(&b, "  %s\n", m)
			}
		}
	}
	return b.String()
}

func parseTP(t *testing.T, s string) TopicPartition {
	topic, p, ok := strings.Cut(s, "/")
	if !ok {
		t.Fatalf("bad partition %q", s)
	}
	return TopicPartition{topic, int32(mustInt(t, p))}
}

func mustInt(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}

func mustDuration(t *testing.T, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("bad duration %q", s)
	}
	return d
}
