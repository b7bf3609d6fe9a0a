package group

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/idem-dev/idem/internal/testkit"

	"github.com/idem-dev/idem/internal/logstore"
)

// TestScripts runs the data-driven coordinator scripts in testdata/*.txt
// with github.com/cockroachdb/datadriven (as etcd-io/raft does; the txn
// package's scripts use the same runner and error names).
//
// Each block is one command line, a "----" line and the expected output, up
// to a blank line; lines starting with # are comments. Run with -rewrite to
// regenerate the expected output after a deliberate change, then read the
// diff. Errors are printed by their Kafka names (what internal/kafka/api
// answers), COORDINATOR_NOT_AVAILABLE qualified by which sentinel it was. The clock is fake and only "advance" moves it; timers fire only on
// "advance" (manualTick), so scripts are deterministic. Clients are named;
// the harness remembers each client's member id and generation and uses them
// unless a command overrides them.
//
// Commands:
//
//	config [delay=D] [min=D] [max=D] [retention=D] [check=D] [compact=N] [cmax=N] [csession=D]   (re)create the coordinator
//	join C g=G [v=N] [i=INSTANCE] [s=D] [r=D] [p=range,rr] [meta=X] [type=T] [new] [m=ID]
//	sync C g=G [gen=N] [assign=C1:x,C2:y] [ptype=T] [proto=P]
//	heartbeat C g=G [gen=N]
//	leave g=G C... | leave g=G i=INSTANCE [m=ID]
//	commit C|- g=G [gen=N] topic/part=offset...
//	fetch g=G                                        "(unstable)": a transactional commit is pending
//	txn-commit C|- g=G pid=N [epoch=E] [gen=N] [m=MEMBER] topic/part=offset...
//	txn-end g=G pid=N [epoch=E] commit|abort
//	offset-delete g=G topic/part...
//	delete G...
//	describe G | list [states]
//	advance D                                        move the clock, run the timers
//	restart | crash                                  close and reopen (crash: MemFS CrashClone)
//
// KIP-848 consumer groups (consumer_script_test.go):
//
//	topics NAME:PARTITIONS...                        the broker's topics heartbeats see
//	hb C g=G [epoch=N] [sub=t,u] [regex=R] [assignor=A] [i=INSTANCE] [r=D] [owned=t:0,1;u:2|none] [keep]
//	cdescribe G                                      epochs, state, members with their partitions
//	ccommit C g=G [epoch=N] [v=9] topic/part=offset...
//	cfetch C g=G [epoch=N]                           OffsetFetch v9's member check
//	txn-commit works for consumer groups with the member's epoch as generation.
func TestScripts(t *testing.T) {
	testkit.WalkScripts(t, "testdata", func(t *testing.T, path string) {
		e := newScriptEnv(t)
		e.open()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return e.run(d.FullCmd())
		})
	})
}

type scriptClient struct {
	member string
	gen    int32
	joinCh chan joinReply
	syncCh chan syncReply
}

type scriptEnv struct {
	t       *testing.T
	fs      *logstore.MemFS
	cfg     Config
	c       *Coordinator
	now     time.Time
	ids     int
	clients map[string]*scriptClient
	// KIP-848 (consumer_script_test.go).
	topics    *Topics
	consumers map[string]*consumerClient
}

func newScriptEnv(t *testing.T) *scriptEnv {
	e := &scriptEnv{t: t, fs: logstore.NewMemFS(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), clients: map[string]*scriptClient{}, topics: NewTopics(nil)}
	e.cfg = DefaultConfig()
	e.cfg.FS, e.cfg.Dir, e.cfg.Now = e.fs, "offsets", func() time.Time { return e.now }
	e.cfg.InitialRebalanceDelay, e.cfg.manualTick = 0, true
	e.cfg.memberID = func(client string) string { e.ids++; return fmt.Sprintf("%s-%d", client, e.ids) }
	t.Cleanup(func() {
		if e.c != nil {
			e.c.Close()
		}
	})
	return e
}

func (e *scriptEnv) open() {
	e.cfg.FS = e.fs
	c, err := NewCoordinator(e.cfg)
	if err != nil {
		e.t.Fatalf("NewCoordinator: %v", err)
	}
	e.c = c
}

func (e *scriptEnv) client(name string) *scriptClient {
	cl := e.clients[name]
	if cl == nil {
		cl = &scriptClient{gen: -1}
		e.clients[name] = cl
	}
	return cl
}

var errNames = map[error]string{
	ErrClosed: "COORDINATOR_NOT_AVAILABLE(closed)", ErrInvalidGroupID: "INVALID_GROUP_ID", ErrInvalidSessionTimeout: "INVALID_SESSION_TIMEOUT",
	ErrInconsistentProtocol: "INCONSISTENT_GROUP_PROTOCOL", ErrMemberIDRequired: "MEMBER_ID_REQUIRED",
	ErrUnknownMember: "UNKNOWN_MEMBER_ID", ErrIllegalGeneration: "ILLEGAL_GENERATION",
	ErrRebalanceInProgress: "REBALANCE_IN_PROGRESS", ErrFencedInstanceID: "FENCED_INSTANCE_ID",
	ErrGroupNotFound: "GROUP_ID_NOT_FOUND", ErrNonEmptyGroup: "NON_EMPTY_GROUP",
	ErrSubscribedToTopic: "GROUP_SUBSCRIBED_TO_TOPIC", ErrOffsetMetadataTooLarge: "OFFSET_METADATA_TOO_LARGE",
	ErrStorage:           "COORDINATOR_NOT_AVAILABLE(storage)",
	ErrFencedMemberEpoch: "FENCED_MEMBER_EPOCH", ErrStaleMemberEpoch: "STALE_MEMBER_EPOCH",
	ErrUnreleasedInstanceID: "UNRELEASED_INSTANCE_ID", ErrUnsupportedAssignor: "UNSUPPORTED_ASSIGNOR",
	ErrInvalidRegularExpression: "INVALID_REGULAR_EXPRESSION", ErrGroupMaxSize: "GROUP_MAX_SIZE_REACHED",
	ErrInvalidRequest: "INVALID_REQUEST", ErrUnsupportedVersion: "UNSUPPORTED_VERSION",
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	for e, n := range errNames {
		if errors.Is(err, e) {
			return n
		}
	}
	return err.Error()
}

type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok && !strings.Contains(k, "/") {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, f)
		}
	}
	return a
}

func (a args) dur(k string, def time.Duration) time.Duration {
	if v, ok := a.kv[k]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		return d
	}
	return def
}

func (a args) int(k string, def int) int {
	if v, ok := a.kv[k]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic(err)
		}
		return n
	}
	return def
}

func (a args) has(flag string) bool { return slices.Contains(a.pos, flag) }

func (e *scriptEnv) run(line string) string {
	var out strings.Builder
	fields := strings.Fields(line)
	a := parseArgs(fields[1:])
	ctx := context.Background()
	g := a.kv["g"]
	switch fields[0] {
	case "config":
		if e.c != nil {
			e.c.Close()
		}
		d := DefaultConfig()
		e.cfg.InitialRebalanceDelay = a.dur("delay", 0)
		e.cfg.MinSessionTimeout = a.dur("min", d.MinSessionTimeout)
		e.cfg.MaxSessionTimeout = a.dur("max", d.MaxSessionTimeout)
		e.cfg.OffsetsRetention = a.dur("retention", d.OffsetsRetention)
		e.cfg.OffsetsRetentionCheckInterval = a.dur("check", d.OffsetsRetentionCheckInterval)
		e.cfg.CompactRecords = a.int("compact", d.CompactRecords)
		e.cfg.ConsumerMaxSize = a.int("cmax", d.ConsumerMaxSize)
		e.cfg.ConsumerSessionTimeout = a.dur("csession", d.ConsumerSessionTimeout)
		e.open()
		out.WriteString("ok\n")
	case "join":
		name := a.pos[0]
		cl := e.client(name)
		v := a.int("v", 9)
		req := JoinRequest{
			Group: g, MemberID: cl.member, InstanceID: a.kv["i"], ClientID: name, ClientHost: "/127.0.0.1",
			ProtocolType: "consumer", SessionTimeout: a.dur("s", 10*time.Second), RebalanceTimeout: a.dur("r", 30*time.Second),
			RequireKnownMemberID: v >= 4, SupportsSkipAssignment: v >= 9,
		}
		if t, ok := a.kv["type"]; ok {
			req.ProtocolType = t
		}
		if a.has("new") {
			req.MemberID = ""
		}
		if m, ok := a.kv["m"]; ok {
			req.MemberID = m
		}
		meta := a.kv["meta"]
		for _, p := range strings.Split(cmpOr(a.kv["p"], "range"), ",") {
			req.Protocols = append(req.Protocols, Protocol{Name: p, Metadata: []byte(p + ":" + meta)})
		}
		ch, res, err := e.c.joinStart(req)
		if ch != nil {
			cl.joinCh = ch
			fmt.Fprintf(&out, "%s: join waiting\n", name)
		} else {
			e.joinDone(&out, name, res, err)
		}
	case "sync":
		name := a.pos[0]
		cl := e.client(name)
		req := SyncRequest{Group: g, MemberID: cmpOr(a.kv["m"], cl.member), Generation: int32(a.int("gen", int(cl.gen))),
			InstanceID: a.kv["i"], ProtocolType: a.kv["ptype"], Protocol: a.kv["proto"]}
		if as, ok := a.kv["assign"]; ok {
			req.Assignments = map[string][]byte{}
			for _, kv := range strings.Split(as, ",") {
				c, v, _ := strings.Cut(kv, ":")
				req.Assignments[e.client(c).member] = []byte(v)
			}
		}
		ch, res, err := e.c.syncStart(req)
		if ch != nil {
			cl.syncCh = ch
			fmt.Fprintf(&out, "%s: sync waiting\n", name)
		} else {
			syncDone(&out, name, res, err)
		}
	case "heartbeat":
		name := a.pos[0]
		cl := e.client(name)
		err := e.c.Heartbeat(HeartbeatRequest{Group: g, MemberID: cmpOr(a.kv["m"], cl.member), InstanceID: a.kv["i"], Generation: int32(a.int("gen", int(cl.gen)))})
		fmt.Fprintf(&out, "%s: heartbeat %s\n", name, errName(err))
	case "leave":
		var ls []LeaveMember
		if i, ok := a.kv["i"]; ok {
			ls = append(ls, LeaveMember{InstanceID: i, MemberID: a.kv["m"]})
		}
		for _, name := range a.pos {
			ls = append(ls, LeaveMember{MemberID: e.client(name).member})
		}
		errs, err := e.c.LeaveGroup(g, ls)
		fmt.Fprintf(&out, "leave %s", errName(err))
		for _, err := range errs {
			fmt.Fprintf(&out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "commit":
		req := CommitRequest{Group: g, Generation: -1}
		if a.pos[0] != "-" {
			cl := e.client(a.pos[0])
			req.MemberID, req.Generation = cl.member, cl.gen
		}
		req.Generation = int32(a.int("gen", int(req.Generation)))
		for _, p := range a.pos[1:] {
			tp, off, _ := strings.Cut(p, "=")
			topic, part, _ := strings.Cut(tp, "/")
			pn, _ := strconv.Atoi(part)
			o, _ := strconv.ParseInt(off, 10, 64)
			meta := ""
			if n := a.int("metalen", 0); n > 0 {
				meta = strings.Repeat("x", n)
			}
			req.Offsets = append(req.Offsets, OffsetCommit{Topic: topic, Partition: int32(pn), Offset: o, LeaderEpoch: -1, Metadata: meta})
		}
		errs, err := e.c.CommitOffsets(ctx, req)
		fmt.Fprintf(&out, "commit %s", errName(err))
		for _, err := range errs {
			fmt.Fprintf(&out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "fetch":
		offs, err := e.c.FetchOffsets(ctx, g)
		fmt.Fprintf(&out, "fetch %s", errName(err))
		for _, tp := range sortedPartitions(offs) {
			fmt.Fprintf(&out, " %s/%d=%d", tp.Topic, tp.Partition, offs[tp].Offset)
			if offs[tp].Unstable {
				out.WriteString("(unstable)")
			}
		}
		out.WriteString("\n")
	case "txn-commit":
		req := TxnCommitRequest{Group: g, Generation: -1, ProducerID: int64(a.int("pid", 1)), ProducerEpoch: int16(a.int("epoch", 0))}
		if a.pos[0] != "-" {
			cl := e.client(a.pos[0])
			req.MemberID, req.Generation = cl.member, cl.gen
		}
		if m, ok := a.kv["m"]; ok {
			req.MemberID = m // a KIP-848 member: gen is its member epoch
		}
		req.Generation = int32(a.int("gen", int(req.Generation)))
		for _, p := range a.pos[1:] {
			tp, off, _ := strings.Cut(p, "=")
			topic, part, _ := strings.Cut(tp, "/")
			pn, _ := strconv.Atoi(part)
			o, _ := strconv.ParseInt(off, 10, 64)
			req.Offsets = append(req.Offsets, OffsetCommit{Topic: topic, Partition: int32(pn), Offset: o, LeaderEpoch: -1})
		}
		errs, err := e.c.TxnOffsetCommit(ctx, req)
		fmt.Fprintf(&out, "txn-commit %s", errName(err))
		for _, err := range errs {
			fmt.Fprintf(&out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "txn-end":
		err := e.c.CompleteTxnOffsets(ctx, g, int64(a.int("pid", 1)), int16(a.int("epoch", 0)), a.has("commit"))
		fmt.Fprintf(&out, "txn-end %s\n", errName(err))
	case "offset-delete":
		var tps []TopicPartition
		for _, p := range a.pos {
			topic, part, _ := strings.Cut(p, "/")
			pn, _ := strconv.Atoi(part)
			tps = append(tps, TopicPartition{topic, int32(pn)})
		}
		errs, err := e.c.DeleteOffsets(ctx, g, tps)
		fmt.Fprintf(&out, "offset-delete %s", errName(err))
		for _, err := range errs {
			fmt.Fprintf(&out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "delete":
		errs := e.c.DeleteGroups(ctx, a.pos)
		out.WriteString("delete")
		for _, err := range errs {
			fmt.Fprintf(&out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "describe":
		for _, id := range a.pos {
			d := e.c.DescribeGroup(id)
			fmt.Fprintf(&out, "%s %s type=%q proto=%q", d.Group, d.State, d.ProtocolType, d.Protocol)
			e.c.mu.Lock()
			if grp := e.c.groups[id]; grp != nil {
				fmt.Fprintf(&out, " gen=%d leader=%s", grp.generation, grp.leader)
			}
			e.c.mu.Unlock()
			out.WriteString("\n")
			for _, m := range d.Members {
				fmt.Fprintf(&out, "  %s instance=%q assignment=%q\n", m.MemberID, m.InstanceID, m.Assignment)
			}
		}
	case "list":
		var states []State
		for _, s := range a.pos {
			st, ok := ParseState(s)
			if !ok {
				panic("bad state " + s)
			}
			states = append(states, st)
		}
		for _, l := range e.c.ListGroups(states) {
			fmt.Fprintf(&out, "%s %s %q\n", l.Group, l.State, l.ProtocolType)
		}
		if out.Len() == 0 {
			out.WriteString("(none)\n")
		}
	case "advance":
		d, err := time.ParseDuration(a.pos[0])
		if err != nil {
			panic(err)
		}
		e.now = e.now.Add(d)
		e.c.tick()
		fmt.Fprintf(&out, "now +%s\n", e.now.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	case "restart", "crash":
		if fields[0] == "crash" {
			crashed := e.fs.CrashClone(logstore.CrashOptions{})
			e.c.Close()
			e.fs = crashed
		} else {
			e.c.Close()
		}
		e.open()
		out.WriteString("reopened\n")
	default:
		if !e.runConsumer(fields[0], a, &out) {
			panic("unknown command " + fields[0])
		}
	}
	// Report calls that completed because of this command.
	names := make([]string, 0, len(e.clients))
	for n := range e.clients {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		cl := e.clients[n]
		select {
		case r := <-cl.joinCh:
			cl.joinCh = nil
			e.joinDone(&out, n, r.res, r.err)
		default:
		}
		select {
		case r := <-cl.syncCh:
			cl.syncCh = nil
			syncDone(&out, n, r.res, r.err)
		default:
		}
	}
	return out.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (e *scriptEnv) joinDone(out *strings.Builder, name string, res JoinResult, err error) {
	cl := e.client(name)
	if err == nil || errors.Is(err, ErrMemberIDRequired) {
		cl.member = res.MemberID
	}
	if err != nil {
		fmt.Fprintf(out, "%s: join %s member=%s\n", name, errName(err), res.MemberID)
		return
	}
	cl.gen = res.Generation
	fmt.Fprintf(out, "%s: joined gen=%d member=%s leader=%s proto=%s", name, res.Generation, res.MemberID, res.LeaderID, res.Protocol)
	if res.SkipAssignment {
		out.WriteString(" skip-assignment")
	}
	if len(res.Members) > 0 {
		out.WriteString(" members=")
		for i, m := range res.Members {
			if i > 0 {
				out.WriteString(",")
			}
			fmt.Fprintf(out, "%s(%s)", m.MemberID, m.Metadata)
		}
	}
	out.WriteString("\n")
}

func syncDone(out *strings.Builder, name string, res SyncResult, err error) {
	if err != nil {
		fmt.Fprintf(out, "%s: sync %s\n", name, errName(err))
		return
	}
	fmt.Fprintf(out, "%s: synced assignment=%q\n", name, res.Assignment)
}
