package share

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/idem-dev/idem/internal/testkit"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
)

// TestScripts runs the data-driven scripts in testdata/*.txt (the same
// runner and conventions as internal/group's): each block is a command,
// "----" and the expected output; -rewrite regenerates the output. The
// clock is fake: only "advance" moves it and runs the timers; the
// dead-letter writer runs only on "dlq". Errors print as the Kafka names
// internal/kafka/api answers with.
//
// Commands:
//
//	broker k=v...                         set broker properties (dynamic ones apply at once)
//	topic NAME [p=N] [k=v...]             create a topic (k=v: topic configs)
//	produce TOPIC/P n=N [prefix=S] [batch=B]  append N records, one per batch (or B per batch)
//	gconfig G k=v... | gconfig G -k       set (or delete) group configs
//	join C g=G topics=T1,T2               ShareGroupHeartbeat epoch 0 (member id C)
//	heartbeat C g=G [epoch=N] [topics=..] ShareGroupHeartbeat
//	leave C g=G                           ShareGroupHeartbeat epoch -1
//	fetch C g=G [tps=T/P,..] [max=N] [strict] [epoch=N]
//	                                      ShareFetch (opens the session on first use)
//	ack C g=G T/P first-last:types... [renew] [epoch=N]
//	                                      ShareAcknowledge; types a(ccept) r(elease) x (reject) g(ap) n (renew), one or one per offset joined by "."
//	close C g=G                           ShareAcknowledge epoch -1
//	disconnect C                          the client's connection closes
//	advance D                             move the clock, run the timers
//	state G T/P | offsets G | describe G | list
//	alter-offsets G T/P=O... | delete-offsets G T... | delete G
//	dlq                                   run the dead-letter writer once
//	read T/P                              print a partition's records and headers
//	restart | crash                       close and reopen (crash: power loss on the MemFS)
func TestScripts(t *testing.T) {
	testkit.WalkScripts(t, "testdata", func(t *testing.T, path string) {
		e := newScriptEnv(t)
		defer e.close()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return e.run(d.FullCmd())
		})
	})
}

type scriptClient struct {
	epoch     int32 // member epoch
	sessEpoch int32 // the next share-session epoch (0: none open)
	conn      uint64
	cancel    context.CancelFunc
	ctx       context.Context
}

type scriptEnv struct {
	t       *testing.T
	fs      *logstore.MemFS
	conf    *config.Config
	nowNs   atomic.Int64 // the fake clock; the partitions' goroutines read it too
	st      *storage
	c       *Coordinator
	clients map[string]*scriptClient
	conns   uint64
}

func newScriptEnv(t *testing.T) *scriptEnv {
	e := &scriptEnv{t: t, fs: logstore.NewMemFS(), conf: config.New(), clients: map[string]*scriptClient{}}
	e.nowNs.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	// Scripts use short locks.
	e.conf.Set("group.share.min.record.lock.duration.ms", "1000")
	e.conf.Set("group.share.record.lock.duration.ms", "10000")
	e.open()
	return e
}

func (e *scriptEnv) clock() time.Time { return time.Unix(0, e.nowNs.Load()).UTC() }

func (e *scriptEnv) open() {
	e.st = newStorage(e.t, e.fs, e.conf, e.clock)
	c, err := New(e.st.config(true))
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.c = c
}

func (e *scriptEnv) close() {
	for _, cl := range e.clients {
		if cl.cancel != nil {
			cl.cancel()
		}
	}
	if e.c != nil {
		e.c.Close()
		e.c = nil
	}
	if e.st != nil {
		e.st.close()
		e.st = nil
	}
}

func (e *scriptEnv) client(name string) *scriptClient {
	cl := e.clients[name]
	if cl == nil {
		cl = &scriptClient{}
		e.newConn(cl)
		e.clients[name] = cl
	}
	return cl
}

func (e *scriptEnv) newConn(cl *scriptClient) {
	e.conns++
	cl.conn = e.conns
	cl.ctx, cl.cancel = context.WithCancel(context.Background())
	cl.sessEpoch = 0
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

// tp parses T/P into a topic id and partition.
func (e *scriptEnv) tp(s string) (TopicPartition, string) {
	name, p, _ := strings.Cut(s, "/")
	n, _ := strconv.Atoi(p)
	ti, ok := e.st.topics().ByName(name)
	if !ok {
		ti.ID = [16]byte{0xff}
	}
	return TopicPartition{ti.ID, int32(n)}, name
}

func (e *scriptEnv) name(id [16]byte) string {
	if ti, ok := e.st.topics().ByID(id); ok {
		return ti.Name
	}
	return fmt.Sprintf("%x", id[:2])
}

var ackLetters = map[byte]int8{'g': AckGap, 'a': AckAccept, 'r': AckRelease, 'x': AckReject, 'n': AckRenew}

func parseAckBatch(s string) AckBatch {
	rng, types, _ := strings.Cut(s, ":")
	f, l := rng, rng
	if i := strings.Index(rng[1:], "-"); i >= 0 {
		f, l = rng[:i+1], rng[i+2:]
	}
	first, _ := strconv.ParseInt(f, 10, 64)
	last, _ := strconv.ParseInt(l, 10, 64)
	b := AckBatch{First: first, Last: last}
	for _, t := range strings.Split(types, ".") {
		if v, ok := ackLetters[t[0]]; ok && len(t) == 1 {
			b.Types = append(b.Types, v)
		} else {
			n, _ := strconv.Atoi(t)
			b.Types = append(b.Types, int8(n))
		}
	}
	return b
}

func (e *scriptEnv) run(line string) (result string) {
	var out strings.Builder
	fields := strings.Fields(line)
	a := parseArgs(fields[1:])
	ctx := context.Background()
	g := a.kv["g"]
	switch fields[0] {
	case "broker":
		for k, v := range a.kv {
			if p, ok := config.Lookup(k); ok && p.Dynamic {
				v := v
				if err := e.conf.SetDynamic(k, &v); err != nil {
					fmt.Fprintf(&out, "%v\n", err)
				}
			} else if err := e.conf.Set(k, v); err != nil {
				fmt.Fprintf(&out, "%v\n", err)
			}
		}
		out.WriteString("ok\n")
	case "topic":
		configs := map[string]string{}
		for k, v := range a.kv {
			if k != "p" {
				configs[k] = v
			}
		}
		if _, err := e.st.tm.CreateTopic(a.pos[0], int32(a.int("p", 1)), configs); err != nil {
			fmt.Fprintf(&out, "%v\n", err)
		}
		out.WriteString("ok\n")
	case "produce":
		tp := a.pos[0]
		name, p, _ := strings.Cut(tp, "/")
		n, _ := strconv.Atoi(p)
		if b := a.int("batch", 1); b > 1 {
			e.st.produceBatches(name, int32(n), a.int("n", 1), b)
		} else {
			e.st.produce(name, int32(n), a.kv["prefix"], a.int("n", 1))
		}
		out.WriteString("ok\n")
	case "gconfig":
		var ops []ConfigOp
		for _, k := range sortedKeys(a.kv) {
			v := a.kv[k]
			ops = append(ops, ConfigOp{Name: k, Value: &v, Op: OpSet})
		}
		for _, p := range a.pos[1:] {
			ops = append(ops, ConfigOp{Name: strings.TrimPrefix(p, "-"), Op: OpDelete})
		}
		fmt.Fprintf(&out, "%s\n", errName(e.c.AlterConfigs(ctx, ResourceGroup, a.pos[0], ops, true, false)))
	case "join", "heartbeat", "leave":
		name := a.pos[0]
		cl := e.client(name)
		req := HeartbeatRequest{Group: g, MemberID: name, MemberEpoch: int32(a.int("epoch", int(cl.epoch))), ClientID: name, Host: "/127.0.0.1"}
		if fields[0] == "join" {
			req.MemberEpoch = 0
		}
		if fields[0] == "leave" {
			req.MemberEpoch = -1
		}
		if ts, ok := a.kv["topics"]; ok {
			req.Subscribed = []string{}
			if ts != "" {
				req.Subscribed = strings.Split(ts, ",")
			}
		}
		res, err := e.c.Heartbeat(req)
		if err != nil {
			fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
			break
		}
		cl.epoch = res.MemberEpoch
		fmt.Fprintf(&out, "%s: epoch=%d", name, res.MemberEpoch)
		if res.Assignment != nil {
			fmt.Fprintf(&out, " assignment=%s", e.assignment(res.Assignment))
		}
		out.WriteString("\n")
	case "fetch":
		name := a.pos[0]
		cl := e.client(name)
		ss, err := e.session(cl, g, name, a)
		if err != nil {
			fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
			break
		}
		var add []TopicPartition
		if ts, ok := a.kv["tps"]; ok {
			for _, s := range strings.Split(ts, ",") {
				tp, _ := e.tp(s)
				add = append(add, tp)
			}
		}
		e.c.UpdateSession(ss, add, nil)
		res, err := e.c.Fetch(ctx, ss, FetchOptions{MaxRecords: a.int("max", 500), Strict: a.has("strict"), MaxBytes: 1 << 20})
		if err != nil {
			fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
			break
		}
		fmt.Fprintf(&out, "%s:", name)
		if len(res.Partitions) == 0 {
			out.WriteString(" nothing")
		}
		for _, p := range res.Partitions {
			fmt.Fprintf(&out, " %s/%d", e.name(p.TopicID), p.Partition)
			if p.Err != nil {
				fmt.Fprintf(&out, " %s", errName(p.Err))
			}
			for _, r := range p.Acquired {
				fmt.Fprintf(&out, " %d-%d@%d", r.First, r.Last, r.DeliveryCount)
			}
		}
		out.WriteString("\n")
	case "ack":
		name := a.pos[0]
		cl := e.client(name)
		ss, err := e.session(cl, g, name, a)
		if err != nil {
			fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
			break
		}
		tp, _ := e.tp(a.pos[1])
		var batches []AckBatch
		for _, s := range a.pos[2:] {
			if s == "renew" {
				continue
			}
			batches = append(batches, parseAckBatch(s))
		}
		pos, err := e.c.Acknowledge(ss, tp, batches, a.has("renew"))
		if err == nil {
			err = e.c.WaitDurable(ctx, pos)
		}
		fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
	case "close":
		name := a.pos[0]
		cl := e.client(name)
		ss, err := e.c.OpenSession(cl.ctx, g, name, cl.conn, -1)
		if err == nil {
			var pos int64
			pos, err = e.c.CloseSession(ss)
			if err == nil {
				err = e.c.WaitDurable(ctx, pos)
			}
			cl.sessEpoch = 0
		}
		fmt.Fprintf(&out, "%s: %s\n", name, errName(err))
	case "disconnect":
		cl := e.client(a.pos[0])
		cl.cancel()
		e.c.closeConn(cl.conn) // what the AfterFunc does, synchronously
		e.newConn(cl)
		out.WriteString("ok\n")
	case "advance":
		d, err := time.ParseDuration(a.pos[0])
		if err != nil {
			panic(err)
		}
		e.nowNs.Add(int64(d))
		e.c.tick()
		out.WriteString("ok\n")
	case "state":
		tp, _ := e.tp(a.pos[1])
		out.WriteString(e.state(a.pos[0], tp))
	case "offsets":
		offs, err := e.c.DescribeOffsets(a.pos[0], nil)
		if err != nil {
			fmt.Fprintf(&out, "%s\n", errName(err))
			break
		}
		for _, o := range offs {
			fmt.Fprintf(&out, "%s/%d start=%d lag=%d\n", o.Topic, o.Partition, o.StartOffset, o.Lag)
		}
	case "describe":
		d, err := e.c.DescribeGroup(a.pos[0])
		if err != nil {
			fmt.Fprintf(&out, "%s\n", errName(err))
			break
		}
		fmt.Fprintf(&out, "%s %s epoch=%d\n", d.Group, d.State, d.Epoch)
		for _, m := range d.Members {
			fmt.Fprintf(&out, "  %s epoch=%d subscribed=%s assignment=%s\n", m.MemberID, m.MemberEpoch, strings.Join(m.Subscribed, ","), e.assignment(m.Assignment))
		}
	case "list":
		for _, l := range e.c.ListGroups() {
			fmt.Fprintf(&out, "%s %s\n", l.Group, l.State)
		}
	case "alter-offsets":
		var offs []PartitionOffset
		for _, s := range a.pos[1:] {
			tps, o, _ := strings.Cut(s, "=")
			tp, _ := e.tp(tps)
			n, _ := strconv.ParseInt(o, 10, 64)
			offs = append(offs, PartitionOffset{tp.TopicID, tp.Partition, n})
		}
		errs, err := e.c.AlterOffsets(ctx, a.pos[0], offs)
		if err != nil {
			fmt.Fprintf(&out, "%s\n", errName(err))
			break
		}
		for i, err := range errs {
			fmt.Fprintf(&out, "%s: %s\n", a.pos[i+1], errName(err))
		}
	case "delete-offsets":
		var ids [][16]byte
		for _, s := range a.pos[1:] {
			tp, _ := e.tp(s + "/0")
			ids = append(ids, tp.TopicID)
		}
		errs, err := e.c.DeleteOffsets(ctx, a.pos[0], ids)
		if err != nil {
			fmt.Fprintf(&out, "%s\n", errName(err))
			break
		}
		for i, err := range errs {
			fmt.Fprintf(&out, "%s: %s\n", a.pos[i+1], errName(err))
		}
	case "delete":
		fmt.Fprintf(&out, "%s\n", errName(e.c.DeleteGroup(ctx, a.pos[0])))
	case "dlq":
		e.c.runDLQ()
		out.WriteString("ok\n")
	case "read":
		out.WriteString(e.read(a.pos[0]))
	case "restart", "crash":
		var fs *logstore.MemFS
		if fields[0] == "crash" {
			fs = e.fs.CrashClone(logstore.CrashOptions{})
		}
		e.close()
		if fs != nil {
			e.fs = fs
		}
		e.clients = map[string]*scriptClient{}
		e.open()
		out.WriteString("ok\n")
	default:
		e.t.Fatalf("unknown command %q", fields[0])
	}
	return out.String()
}

// session opens the client's share session at epoch 0 or moves it on.
func (e *scriptEnv) session(cl *scriptClient, g, name string, a args) (*Session, error) {
	epoch := int32(a.int("epoch", int(cl.sessEpoch)))
	ss, err := e.c.OpenSession(cl.ctx, g, name, cl.conn, epoch)
	if err != nil {
		return nil, err
	}
	if epoch >= 0 {
		cl.sessEpoch = ss.s.epoch
	}
	return ss, nil
}

func (e *scriptEnv) assignment(as map[[16]byte][]int32) string {
	var parts []string
	for id, ps := range as {
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("%s/%d", e.name(id), p))
		}
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

// state prints a share partition: its start, its window as runs and the
// records each member holds.
func (e *scriptEnv) state(g string, tp TopicPartition) string {
	c := e.c
	c.mu.Lock()
	defer c.mu.Unlock()
	gr := c.groups[g]
	if gr == nil {
		return "no group\n"
	}
	sp := gr.sps[topicPartition{tp.TopicID, tp.Partition}]
	if sp == nil {
		return "no state\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "spso=%d end=%d", sp.spso, sp.end())
	type key struct {
		st    recState
		count int16
		owner string
		avail int64
	}
	var cur key
	start := int64(-1)
	flush := func(end int64) {
		if start < 0 {
			return
		}
		fmt.Fprintf(&b, " %d-%d:%v/%d", start, end, cur.st, cur.count)
		if cur.owner != "" {
			fmt.Fprintf(&b, "(%s)", cur.owner)
		}
		if cur.avail > 0 {
			fmt.Fprintf(&b, "(after+%dms)", cur.avail-e.clock().UnixMilli())
		}
	}
	for i := range sp.recs {
		r := &sp.recs[i]
		k := key{st: r.state, count: r.count, avail: r.availAt}
		if r.owner != nil {
			k.owner = r.owner.key.member
		}
		o := sp.spso + int64(i)
		if start >= 0 && k == cur {
			continue
		}
		flush(o - 1)
		cur, start = k, o
	}
	flush(sp.end() - 1)
	pending := 0
	for _, e := range c.dlq.entries {
		if e.key.group == g && e.key.tp == sp.tp {
			pending++
		}
	}
	if pending > 0 {
		fmt.Fprintf(&b, " dlq-pending=%d", pending)
	}
	b.WriteString("\n")
	return b.String()
}

// read prints a partition's records: offset, value, headers.
func (e *scriptEnv) read(s string) string {
	name, p, _ := strings.Cut(s, "/")
	n, _ := strconv.Atoi(p)
	part, err := e.st.topics().Partition(name, int32(n))
	if err != nil {
		return errName(err) + "\n"
	}
	var b strings.Builder
	for o := part.StartOffset(); o < part.HighWatermark(); o++ {
		k, v, hs, err := e.c.sourceRecord(name, int32(n), o)
		if err != nil {
			fmt.Fprintf(&b, "%d: %v\n", o, err)
			continue
		}
		fmt.Fprintf(&b, "%d: key=%q value=%q", o, k, v)
		for _, h := range hs {
			fmt.Fprintf(&b, " %s=%s", h[0], h[1])
		}
		b.WriteString("\n")
	}
	if b.Len() == 0 {
		return "empty\n"
	}
	return b.String()
}
