package txn

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The scenarios below are the coordinator's specification, one step a line:
//
//	<op> <args> => <outcome> [check …]
//
// ops:   init ID [timeout=DUR] [expect=PID/EPOCH]   InitProducerId
//        add ID T/P …        AddPartitionsToTxn with ID's current pid/epoch
//        offsets ID GROUP    AddOffsetsToTxn
//        commit ID | abort ID                      EndTxn
//        verify ID T/P       Verify (the Produce check)
//        describe ID         DescribeTransactions
//        advance DUR | tick | crash                fake clock, timer pass, power loss
//                            (steps without an id check the last id named)
//        stale ID            later steps of ID use the pid/epoch ID had before its last init
// outcome: ok, or an error name (fenced, concurrent, invalid-state, mapping,
//        timeout, epoch, not-found, invalid-request)
// checks: state=NAME|gone  pid=N  epoch=N  markers=M;M…|none (all marker and
//        offset-completion calls since the last check, sorted; waits until
//        completions are done)

var errNames = map[string]error{
	"ok":              nil,
	"fenced":          ErrProducerFenced,
	"concurrent":      ErrConcurrentTransactions,
	"invalid-state":   ErrInvalidTxnState,
	"mapping":         ErrInvalidProducerIDMapping,
	"timeout":         ErrInvalidTransactionTimeout,
	"epoch":           ErrInvalidProducerEpoch,
	"not-found":       ErrTransactionalIDNotFound,
	"invalid-request": ErrInvalidRequest,
}

var scenarios = map[string]string{
	"init allocates, re-init bumps the epoch": `
init a => ok pid=1000 epoch=0 state=Empty
init a => ok pid=1000 epoch=1 state=Empty
init b => ok pid=1001 epoch=0
init a timeout=16m => timeout
init a timeout=0s => timeout
init "" => invalid-request`,

	"commit: Empty → Ongoing → PrepareCommit → CompleteCommit, markers for every partition and group": `
init a => ok
add a t/0 t/1 => ok state=Ongoing markers=none
add a t/1 => ok state=Ongoing
offsets a g1 => ok state=Ongoing
verify a t/0 => ok
verify a t/2 => invalid-state
commit a => ok state=CompleteCommit markers=COMMIT_group:g1_pid=1000_epoch=0;COMMIT_t/0_pid=1000_epoch=0;COMMIT_t/1_pid=1000_epoch=0
verify a t/0 => invalid-state
commit a => ok state=CompleteCommit markers=none
abort a => invalid-state
add a t/5 => ok state=Ongoing
verify a t/0 => invalid-state
verify a t/5 => ok`,

	"abort: Ongoing → PrepareAbort → CompleteAbort; the next transaction may start": `
init a => ok
add a t/0 => ok
abort a => ok state=CompleteAbort markers=ABORT_t/0_pid=1000_epoch=0
abort a => ok
commit a => invalid-state
offsets a g => ok state=Ongoing
commit a => ok state=CompleteCommit markers=COMMIT_group:g_pid=1000_epoch=0`,

	"EndTxn with nothing open is INVALID_TXN_STATE": `
init a => ok
commit a => invalid-state state=Empty
abort a => invalid-state state=Empty markers=none`,

	"unknown id or wrong producer id is INVALID_PRODUCER_ID_MAPPING": `
add nobody t/0 => mapping
commit nobody => mapping
init a => ok
init b => ok
verify b t/0 => invalid-state`,

	"a newer instance fences the older one; an open transaction is aborted at the bumped epoch first": `
init a => ok pid=1000 epoch=0
add a t/0 t/1 => ok
init a => concurrent markers=ABORT_t/0_pid=1000_epoch=1;ABORT_t/1_pid=1000_epoch=1 state=CompleteAbort
init a => ok pid=1000 epoch=2 state=Empty
stale a
add a t/0 => fenced
commit a => fenced
verify a t/0 => fenced`,

	"KIP-360: expected id/epoch bumps; a retry of a lost answer gets the same epoch; anything else is fenced": `
init a => ok epoch=0
init a expect=1000/0 => ok epoch=1
init a expect=1000/0 => ok epoch=1
init a expect=1000/1 => ok epoch=2
init a expect=1000/0 => fenced
init a expect=999/2 => fenced
init a expect=1000/2 => ok epoch=3`,

	"transaction.timeout.ms: the timer aborts with a bumped epoch and the old producer is fenced": `
init a timeout=10s => ok epoch=0
add a t/0 => ok
advance 9s
tick => ok state=Ongoing markers=none
advance 2s
tick => ok state=CompleteAbort markers=ABORT_t/0_pid=1000_epoch=1
commit a => fenced
add a t/0 => fenced
verify a t/0 => fenced
init a expect=1000/0 => fenced
init a => ok epoch=2`,

	"transactional.id.expiration.ms forgets idle ids; an open one times out first and stays": `
init a => ok pid=1000
init b => ok pid=1001
add b t/0 => ok
advance 169h
tick => ok
describe a => not-found
describe b => ok state=CompleteAbort
init c => ok pid=1002
advance 2h
tick => ok
describe c => ok state=Empty
init a => ok pid=1003 epoch=0`,

	"durability: acknowledged inits and adds survive a power loss": `
init a => ok pid=1000 epoch=0
init a => ok epoch=1
add a t/0 => ok
offsets a g => ok
crash
verify a t/0 => ok state=Ongoing
commit a => ok markers=COMMIT_group:g_pid=1000_epoch=1;COMMIT_t/0_pid=1000_epoch=1
crash
init a => ok pid=1000 epoch=2`,
}

func TestScenarios(t *testing.T) {
	for name, script := range scenarios {
		t.Run(name, func(t *testing.T) { runScript(t, script) })
	}
}

func runScript(t *testing.T, script string) {
	e := newEnv(t)
	ctx := context.Background()
	cur := map[string]ProducerIDEpoch{}
	prev := map[string]ProducerIDEpoch{}
	lastID := "" // steps without an id (tick, advance, crash) check the last one named
	for n, line := range strings.Split(strings.TrimSpace(script), "\n") {
		lhs, rhs, _ := strings.Cut(line, "=>")
		f := strings.Fields(lhs)
		checks := strings.Fields(rhs)
		where := fmt.Sprintf("line %d %q", n+1, line)
		if len(f) == 0 {
			t.Fatalf("%s: empty step", where)
		}
		id := lastID
		if len(f) > 1 && f[0] != "advance" {
			id = strings.Trim(f[1], `"`)
			lastID = id
		}
		var err error
		var got ProducerIDEpoch
		switch f[0] {
		case "init":
			timeout, expect := time.Minute, NoProducer
			for _, a := range f[2:] {
				k, v, _ := strings.Cut(a, "=")
				switch k {
				case "timeout":
					timeout = mustDuration(t, v)
				case "expect":
					p, ep, _ := strings.Cut(v, "/")
					expect = ProducerIDEpoch{mustInt(t, p), int16(mustInt(t, ep))}
				}
			}
			got, err = e.c.InitProducerID(ctx, id, timeout, expect)
			if err == nil {
				prev[id], cur[id] = cur[id], got
			}
		case "add":
			var tps []TopicPartition
			for _, a := range f[2:] {
				tps = append(tps, parseTP(t, a))
			}
			err = e.c.AddPartitions(ctx, id, cur[id].ProducerID, cur[id].Epoch, tps)
		case "offsets":
			err = e.c.AddOffsets(ctx, id, cur[id].ProducerID, cur[id].Epoch, f[2])
		case "commit", "abort":
			err = e.c.EndTxn(ctx, id, cur[id].ProducerID, cur[id].Epoch, f[0] == "commit")
		case "verify":
			tp := parseTP(t, f[2])
			err = e.c.Verify(cur[id].ProducerID, cur[id].Epoch, tp.Topic, tp.Partition)
		case "describe":
			_, err = e.c.Describe(id)
		case "advance":
			e.clock.Advance(mustDuration(t, f[1]))
		case "tick":
			e.c.tick()
		case "crash":
			// Markers the restart re-sends (a Complete record not yet
			// fsynced) are not part of the scripts; durability_test.go
			// pins them down.
			e.waitIdle()
			e.crash()
			e.waitIdle()
			e.rec.take()
		case "stale":
			cur[id] = prev[id]
		default:
			t.Fatalf("%s: unknown op %s", where, f[0])
		}
		if len(checks) == 0 {
			if err != nil {
				t.Fatalf("%s: unexpected error %v", where, err)
			}
			continue
		}
		want, ok := errNames[checks[0]]
		if !ok {
			t.Fatalf("%s: unknown outcome %q", where, checks[0])
		}
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Fatalf("%s: got error %v, want %s", where, err, checks[0])
		}
		for _, c := range checks[1:] {
			k, v, _ := strings.Cut(c, "=")
			switch k {
			case "pid":
				if got.ProducerID != mustInt(t, v) {
					t.Fatalf("%s: producer id %d, want %s", where, got.ProducerID, v)
				}
			case "epoch":
				if got.Epoch != int16(mustInt(t, v)) {
					t.Fatalf("%s: epoch %d, want %s", where, got.Epoch, v)
				}
			case "state":
				e.waitIdle()
				info, err := e.c.Describe(id)
				gotState := info.State.String()
				if errors.Is(err, ErrTransactionalIDNotFound) {
					gotState = "gone"
				} else if err != nil {
					t.Fatalf("%s: Describe: %v", where, err)
				}
				if gotState != v {
					t.Fatalf("%s: state %s, want %s", where, gotState, v)
				}
			case "markers":
				e.waitIdle()
				var want []string
				if v != "none" {
					want = strings.Split(strings.ReplaceAll(v, "_", " "), ";")
				}
				equal(t, where+": markers", e.rec.take(), want)
			default:
				t.Fatalf("%s: unknown check %q", where, c)
			}
		}
	}
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
