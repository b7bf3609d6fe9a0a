package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Redrive is idempotent without transactions, so that consumers of the
// target topic see each record once whatever their isolation level: every
// run keeps a ledger in the topic idem.redrive.<dead-letter topic>:
//
//	start  {run, targets' end offsets}   written (acks=all) before anything is produced
//	done   {run, dead-letter offsets}    after the records of a batch are acknowledged
//	end    {run}                         when the run finishes
//
// Each redriven record carries RedriveHeader. A later run first finishes
// the runs that never wrote "end" (a crash, a kill, a cancelled context):
// it scans their targets from the recorded end offsets, where everything
// they produced must be, for that header, and records what it finds as
// done. Records already done are never produced again, so a second run, or
// a run after a crash mid-run, re-sends nothing twice.
//
// Two runs of the same dead-letter topic must not overlap: the second
// would take the first's unfinished run for a crashed one. Within one
// process Redrive refuses the overlap with ErrRedriveRunning; across
// processes (two CLIs, a CLI and the admin API) the operator must not
// start them together.

// ErrRedriveRunning is returned when a redrive of the same dead-letter
// topic on the same brokers is already running in this process.
var ErrRedriveRunning = errors.New("a redrive of this dead-letter topic is already running")

// running holds the redrives under way in this process, by brokers and
// dead-letter topic.
var running sync.Map

// Options select what a redrive moves and where.
type Options struct {
	// Target is the topic to move to; "" sends each record back to the
	// topic (and partition) it came from.
	Target string
	// Group, Since, Until and Headers select: only dead letters of that
	// share group, dead-lettered at or after Since and before Until, with
	// every header of Headers (key=value, __dlq.errors.* included).
	Group        string
	Since, Until time.Time
	Headers      map[string]string
	// Limit, when above 0, moves at most that many records; the rest wait
	// for a later run (Result.Left).
	Limit int
	// DryRun counts what would move and moves nothing.
	DryRun bool
	// Batch is the records per produce batch and per ledger entry
	// (default 500).
	Batch int

	// crashAfter (tests) stops the run after producing that many batches
	// without writing their "done" entry, as a kill -9 would.
	crashAfter int
}

// Result counts what a redrive did.
type Result struct {
	// Redriven: moved by this run (with DryRun: would be moved).
	Redriven int `json:"redriven"`
	// Already: moved by an earlier run, so not moved again.
	Already int `json:"already"`
	// Recovered: of Already, those this run found moved by a run that
	// never finished.
	Recovered int `json:"recovered"`
	// Filtered: not selected by the options.
	Filtered int `json:"filtered"`
	// Left: selected but past the limit.
	Left int `json:"left"`
	// Gone: the payload was not copied into the dead letter and the
	// source no longer has the record.
	Gone int `json:"gone"`
}

// ledgerEntry is one record of the redrive ledger.
type ledgerEntry struct {
	Run     string                     `json:"run"`
	Targets map[string]map[int32]int64 `json:"targets,omitempty"` // start: end offsets per target topic
	Done    []string                   `json:"done,omitempty"`    // done: <dlq>/<partition>/<offset>
}

type ledger struct {
	topic   string
	done    map[string]bool
	started map[string]ledgerEntry // runs without an end
}

// LedgerTopic is the topic where redrives of dlq keep their ledger.
func LedgerTopic(dlq string) string { return "idem.redrive." + dlq }

// readLedger reads the whole ledger of a dead-letter topic.
func readLedger(ctx context.Context, cl *kgo.Client, dlq string) (*ledger, error) {
	l := &ledger{topic: LedgerTopic(dlq), done: map[string]bool{}, started: map[string]ledgerEntry{}}
	var bad error
	err := read(ctx, cl, l.topic, fromStart, func(r *kgo.Record) bool {
		var e ledgerEntry
		if err := json.Unmarshal(r.Value, &e); err != nil {
			bad = fmt.Errorf("ledger %s offset %d: %w", l.topic, r.Offset, err)
			return false
		}
		switch string(r.Key) {
		case "start":
			l.started[e.Run] = e
		case "done":
			for _, k := range e.Done {
				l.done[k] = true
			}
		case "end":
			delete(l.started, e.Run)
		}
		return true
	})
	if err == nil {
		err = bad
	}
	return l, err
}

func (l *ledger) write(ctx context.Context, cl *kgo.Client, kind string, e ledgerEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: l.topic, Partition: 0, Key: []byte(kind), Value: v}).FirstErr()
}

// errSimulatedCrash ends a test run the way a kill would.
var errSimulatedCrash = errors.New("simulated crash")

// Redrive moves the selected dead letters of dlqTopic back to the topic
// each came from (or opts.Target), once: see the comment above. The key,
// value and headers are the dead letter's when the group copied them,
// else the source record's; a record keeps its source partition when it
// goes back to its source topic, and is partitioned by key (Kafka's
// default partitioner) otherwise. The dead letters stay where they are.
// An unknown dead-letter or target topic is kerr.UnknownTopicOrPartition.
func Redrive(ctx context.Context, cl *kgo.Client, dlqTopic string, opts Options) (Result, error) {
	seeds, _ := cl.OptValue(kgo.SeedBrokers).([]string)
	key := strings.Join(seeds, ",") + "\x00" + dlqTopic
	if _, busy := running.LoadOrStore(key, struct{}{}); busy {
		return Result{}, fmt.Errorf("%s: %w", dlqTopic, ErrRedriveRunning)
	}
	defer running.Delete(key)
	// The producer is the caller's client with what the ledger needs
	// made sure of: acks from all replicas, records sent where we say.
	pr, err := kgo.NewClient(append(cl.Opts(), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))...)
	if err != nil {
		return Result{}, err
	}
	defer pr.Close()
	return redrive(ctx, pr, dlqTopic, opts)
}

func redrive(ctx context.Context, cl *kgo.Client, dlqTopic string, o Options) (Result, error) {
	var res Result
	adm := kadm.NewClient(cl)
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if err := mustExist(ctx, cl, dlqTopic); err != nil {
		return res, err
	}
	lt := LedgerTopic(dlqTopic)
	if ts, err := adm.ListTopics(ctx, lt); err != nil {
		return res, err
	} else if !ts.Has(lt) {
		resp, err := adm.CreateTopic(ctx, 1, -1, nil, lt)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return res, fmt.Errorf("create the redrive ledger %s: %w", lt, err)
		}
	}
	l, err := readLedger(ctx, cl, dlqTopic)
	if err != nil {
		return res, err
	}
	// Finish the runs that never ended: what they produced is in their
	// targets past the offsets they recorded first.
	for _, run := range sortedKeysOf(l.started) {
		e := l.started[run]
		var found []string
		for topic, from := range e.Targets {
			err := read(ctx, cl, topic, fromOffsets(from), func(r *kgo.Record) bool {
				for _, h := range r.Headers {
					if h.Key == RedriveHeader && strings.HasPrefix(string(h.Value), dlqTopic+"/") && !l.done[string(h.Value)] {
						l.done[string(h.Value)] = true
						found = append(found, string(h.Value))
					}
				}
				return true
			})
			if err != nil {
				return res, fmt.Errorf("recovering run %s: %w", run, err)
			}
		}
		res.Recovered += len(found)
		if !o.DryRun {
			if len(found) > 0 {
				if err := l.write(ctx, cl, "done", ledgerEntry{Run: run, Done: found}); err != nil {
					return res, err
				}
			}
			if err := l.write(ctx, cl, "end", ledgerEntry{Run: run}); err != nil {
				return res, err
			}
		}
	}
	// What to move.
	var todo []deadLetter
	err = read(ctx, cl, dlqTopic, fromStart, func(r *kgo.Record) bool {
		d := parseDeadLetter(r)
		switch {
		case l.done[d.fromKey]:
			res.Already++
		case !o.matches(d):
			res.Filtered++
		case o.Limit > 0 && len(todo) >= o.Limit:
			res.Left++
		default:
			todo = append(todo, d)
		}
		return true
	})
	if err != nil || len(todo) == 0 {
		return res, err
	}
	if o.DryRun {
		res.Redriven = len(todo)
		return res, nil
	}
	// Payloads missing from the dead letters come from their sources.
	payloads, err := sourcePayloads(ctx, cl, todo)
	if err != nil {
		return res, err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	targets := map[string]map[int32]int64{}
	for _, d := range todo {
		t := o.target(d)
		if _, ok := targets[t]; ok {
			continue
		}
		if t == "" {
			return res, fmt.Errorf("dead letter %s names no source topic: give a target topic", d.fromKey)
		}
		if err := mustExist(ctx, cl, t); err != nil {
			return res, fmt.Errorf("target %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, t)
		if err != nil {
			return res, err
		}
		targets[t] = map[int32]int64{}
		ends.Each(func(lo kadm.ListedOffset) {
			if lo.Err == nil {
				targets[t][lo.Partition] = lo.Offset
			}
		})
		if len(targets[t]) == 0 {
			return res, fmt.Errorf("target topic %q: %w", t, kerr.UnknownTopicOrPartition)
		}
	}
	if err := l.write(ctx, cl, "start", ledgerEntry{Run: run, Targets: targets}); err != nil {
		return res, err
	}
	byKey := kgo.StickyKeyPartitioner(nil)
	batches := 0
	for i := 0; i < len(todo); i += o.Batch {
		chunk := todo[i:min(i+o.Batch, len(todo))]
		var recs []*kgo.Record
		var keys []string
		for _, d := range chunk {
			p, ok := payloads[d.fromKey]
			if !ok {
				res.Gone++
				continue
			}
			t := o.target(d)
			r := &kgo.Record{Topic: t, Key: p.key, Value: p.value, Partition: d.Source.Partition}
			if n := len(targets[t]); t != d.Source.Topic || d.Source.Partition < 0 || int(d.Source.Partition) >= n {
				r.Partition = int32(byKey.ForTopic(t).Partition(r, n))
			}
			r.Headers = append(r.Headers, p.headers...)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: RedriveHeader, Value: []byte(d.fromKey)})
			recs = append(recs, r)
			keys = append(keys, d.fromKey)
		}
		if len(recs) == 0 {
			continue
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return res, err
		}
		batches++
		if o.crashAfter > 0 && batches >= o.crashAfter {
			return res, errSimulatedCrash
		}
		if err := l.write(ctx, cl, "done", ledgerEntry{Run: run, Done: keys}); err != nil {
			return res, err
		}
		res.Redriven += len(recs)
	}
	return res, l.write(ctx, cl, "end", ledgerEntry{Run: run})
}

func (o Options) matches(d deadLetter) bool {
	if o.Group != "" && d.Group != o.Group {
		return false
	}
	if !o.Since.IsZero() && d.r.Timestamp.Before(o.Since) {
		return false
	}
	if !o.Until.IsZero() && !d.r.Timestamp.Before(o.Until) {
		return false
	}
	for k, v := range o.Headers {
		if d.Headers[k] != v {
			return false
		}
	}
	return true
}

func (o Options) target(d deadLetter) string {
	if o.Target != "" {
		return o.Target
	}
	return d.Source.Topic
}

type payload struct {
	key, value []byte
	headers    []kgo.RecordHeader
}

// sourcePayloads returns each dead letter's key, value and headers: its
// own when the group copied them, else the source record's. A source
// record that is gone has no entry.
func sourcePayloads(ctx context.Context, cl *kgo.Client, todo []deadLetter) (map[string]payload, error) {
	out := map[string]payload{}
	need := map[string]map[int32][]deadLetter{}
	for _, d := range todo {
		if d.HasPayload {
			p := payload{key: d.r.Key, value: d.r.Value}
			for _, h := range d.r.Headers {
				if !strings.HasPrefix(h.Key, HeaderPrefix) {
					p.headers = append(p.headers, h)
				}
			}
			out[d.fromKey] = p
			continue
		}
		if d.Source.Topic == "" || d.Source.Partition < 0 || d.Source.Offset < 0 {
			continue // no source to read: gone
		}
		if need[d.Source.Topic] == nil {
			need[d.Source.Topic] = map[int32][]deadLetter{}
		}
		need[d.Source.Topic][d.Source.Partition] = append(need[d.Source.Topic][d.Source.Partition], d)
	}
	for topic, parts := range need {
		from := map[int32]int64{}
		wanted := map[int32]map[int64][]string{}
		for p, ds := range parts {
			from[p] = ds[0].Source.Offset
			wanted[p] = map[int64][]string{}
			for _, d := range ds {
				from[p] = min(from[p], d.Source.Offset)
				wanted[p][d.Source.Offset] = append(wanted[p][d.Source.Offset], d.fromKey)
			}
		}
		err := read(ctx, cl, topic, onlyFrom(from), func(r *kgo.Record) bool {
			for _, k := range wanted[r.Partition][r.Offset] {
				out[k] = payload{key: r.Key, value: r.Value, headers: r.Headers}
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
