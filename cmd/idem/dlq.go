package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dead-letter topics of share groups (KIP-1191): list what is there and
// move it back (redrive), as SQS's StartMessageMoveTask does for queues.
//
// Redrive is idempotent without transactions, so that consumers of the
// target topic see each record once whatever their isolation level: every
// run keeps a ledger in the topic idem.redrive.<dead-letter topic>:
//
//	start  {run, targets' end offsets}   written (acks=all) before anything is produced
//	done   {run, dead-letter offsets}    after the records of a batch are acknowledged
//	end    {run}                         when the run finishes
//
// Each redriven record carries the header __idem.redrive.from =
// "<dead-letter topic>/<partition>/<offset>". A later run first finishes the
// runs that never wrote "end" (a crash, a kill): it scans their targets from
// the recorded end offsets, where everything they produced must be, for
// that header, and records what it finds as done. Records already done are
// never produced again, so a second run, or a run after a crash mid-run,
// re-sends nothing twice. Two redrives of the same dead-letter topic must
// not run at once.

const (
	redriveHeader = "__idem.redrive.from"
	dlqHeaderPfx  = "__dlq.errors."
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List share groups' dead-letter topics and move their records back (redrive)",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(dlqListCmd(client), dlqRedriveCmd(client))
	return cmd
}

func dlqListCmd(client *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list [DLQ-TOPIC]",
		Short: "List dead-letter topics, or the records of one",
		Long: `Without a topic: every dead-letter topic (errors.deadletterqueue.group.enable=true,
or named with the dlq. prefix) and how many records it holds. With a topic:
its records with their source (topic, partition, offset), group, delivery
count, reason, and whether they were redriven.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			ctx := cmd.Context()
			if len(args) == 0 {
				return listDLQTopics(ctx, cmd.OutOrStdout(), adm)
			}
			return listDLQRecords(ctx, cmd.OutOrStdout(), cl, adm, args[0], limit)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most records to print")
	return cmd
}

func listDLQTopics(ctx context.Context, w io.Writer, adm *kadm.Client) error {
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return err
	}
	names := topics.Names()
	cfgs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return err
	}
	var dlqs []string
	for _, rc := range cfgs {
		enabled := false
		for _, c := range rc.Configs {
			enabled = enabled || (c.Key == "errors.deadletterqueue.group.enable" && c.Value != nil && *c.Value == "true")
		}
		if enabled || strings.HasPrefix(rc.Name, "dlq.") {
			dlqs = append(dlqs, rc.Name)
		}
	}
	slices.Sort(dlqs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ-TOPIC\tPARTITIONS\tRECORDS")
	if len(dlqs) > 0 {
		starts, err := adm.ListStartOffsets(ctx, dlqs...)
		if err != nil {
			return err
		}
		ends, err := adm.ListEndOffsets(ctx, dlqs...)
		if err != nil {
			return err
		}
		for _, t := range dlqs {
			var n int64
			parts := 0
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic != t {
					return
				}
				parts++
				if s, ok := starts.Lookup(t, o.Partition); ok {
					n += o.Offset - s.Offset
				}
			})
			fmt.Fprintf(tw, "%s\t%d\t%d\n", t, parts, n)
		}
	}
	return tw.Flush()
}

// deadLetter is one dead-letter record and what its headers say.
type deadLetter struct {
	r                        *kgo.Record
	srcTopic, group, message string
	srcPartition             int32
	srcOffset                int64
	deliveries               int
	headers                  map[string]string
	fromKey                  string // <dlq>/<partition>/<offset>
	hasPayload               bool
}

func parseDeadLetter(r *kgo.Record) deadLetter {
	d := deadLetter{r: r, headers: map[string]string{}, srcPartition: -1, srcOffset: -1}
	for _, h := range r.Headers {
		v := string(h.Value)
		d.headers[h.Key] = v
		switch h.Key {
		case dlqHeaderPfx + "topic":
			d.srcTopic = v
		case dlqHeaderPfx + "partition":
			n, _ := strconv.Atoi(v)
			d.srcPartition = int32(n)
		case dlqHeaderPfx + "offset":
			d.srcOffset, _ = strconv.ParseInt(v, 10, 64)
		case dlqHeaderPfx + "group":
			d.group = v
		case dlqHeaderPfx + "delivery.count":
			d.deliveries, _ = strconv.Atoi(v)
		case dlqHeaderPfx + "message":
			d.message = v
		}
	}
	d.fromKey = fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
	d.hasPayload = r.Key != nil || r.Value != nil
	return d
}

// readAll reads topic from the start to its current end.
func readAll(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, fn func(*kgo.Record)) error {
	return readFrom(ctx, cl, adm, topic, nil, fn)
}

// readFrom reads topic from the given offsets (nil: the start) to the end
// offsets it has now.
func readFrom(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, from map[int32]int64, fn func(*kgo.Record)) error {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return err
	}
	want := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic != topic || o.Err != nil {
			return
		}
		start := int64(0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			start = s.Offset
		}
		if f, ok := from[o.Partition]; ok {
			start = max(start, f)
		}
		if start < o.Offset {
			want[o.Partition] = o.Offset
			offsets[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(want) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(clientOptsOf(cl), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
	if err != nil {
		return err
	}
	defer rd.Close()
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, e := range fs.Errors() {
			return fmt.Errorf("reading %s/%d: %w", e.Topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			fn(r)
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// clientOptsOf returns the seed brokers of an existing client, for the
// short-lived readers redrive makes.
func clientOptsOf(cl *kgo.Client) []kgo.Opt {
	seeds := cl.OptValue(kgo.SeedBrokers).([]string)
	return []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("idem-cli")}
}

func listDLQRecords(ctx context.Context, w io.Writer, cl *kgo.Client, adm *kadm.Client, topic string, limit int) error {
	done := map[string]bool{}
	if l, err := readLedger(ctx, cl, adm, topic); err == nil {
		done = l.done
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tDEAD-LETTERED\tSOURCE\tGROUP\tDELIVERIES\tREASON\tREDRIVEN")
	n := 0
	err := readAll(ctx, cl, adm, topic, func(r *kgo.Record) {
		if n >= limit {
			return
		}
		n++
		d := parseDeadLetter(r)
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s/%d@%d\t%s\t%d\t%s\t%v\n", r.Partition, r.Offset, r.Timestamp.UTC().Format(time.RFC3339),
			d.srcTopic, d.srcPartition, d.srcOffset, d.group, d.deliveries, d.message, done[d.fromKey])
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

func dlqRedriveCmd(client *clientFlags) *cobra.Command {
	var o redriveOptions
	var since, until string
	var headers []string
	cmd := &cobra.Command{
		Use:   "redrive DLQ-TOPIC",
		Short: "Move dead-lettered records back to their source topic (or another), once",
		Long: `Move the records of a dead-letter topic back to the topic each came from
(--to: another topic), all of them or those matching --group, --since/--until
(when they were dead-lettered) and --header. The key, value and headers are
the dead-letter record's when the group copied them
(errors.deadletterqueue.copy.record.enable), else read from the source topic
(a record no longer retained there is reported and skipped). A record keeps
its source partition when it goes back to its source topic.

Redrive is idempotent: a second run, or a run after a crash or kill mid-run,
re-sends nothing twice (the ledger topic idem.redrive.<DLQ-TOPIC> records
what was moved; see the package comment). Run one redrive per dead-letter
topic at a time. The dead-letter records stay where they are.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.since, err = parseTimeFlag(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if o.until, err = parseTimeFlag(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			o.headers = map[string]string{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				o.headers[k] = v
			}
			cl, err := client.newClient(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				return err
			}
			defer cl.Close()
			o.dlq = args[0]
			res, err := redrive(cmd.Context(), cl, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redriven %d; already redriven %d (recovered from an unfinished run: %d); filtered out %d; source gone %d\n",
				res.redriven, res.already, res.recovered, res.filtered, res.gone)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "target topic (default: each record's source topic)")
	f.StringVar(&o.group, "group", "", "only records dead-lettered by this share group")
	f.StringVar(&since, "since", "", "only records dead-lettered at or after this time (RFC 3339 or Unix milliseconds)")
	f.StringVar(&until, "until", "", "only records dead-lettered before this time")
	f.StringArrayVar(&headers, "header", nil, "only records with this header key=value (repeatable; __dlq.errors.* included)")
	f.BoolVar(&o.dryRun, "dry-run", false, "count what would move, move nothing")
	f.IntVar(&o.batch, "batch", 500, "records per produce batch (and per ledger entry)")
	return cmd
}

func parseTimeFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339, s)
}

type redriveOptions struct {
	dlq, to, group string
	since, until   time.Time
	headers        map[string]string
	dryRun         bool
	batch          int
	// crashAfter (tests) stops the run after producing that many batches
	// without writing their "done" entry, as a kill -9 would.
	crashAfter int
}

type redriveResult struct {
	redriven, already, recovered, filtered, gone int
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

func ledgerTopic(dlq string) string { return "idem.redrive." + dlq }

// readLedger reads the whole ledger of a dead-letter topic.
func readLedger(ctx context.Context, cl *kgo.Client, adm *kadm.Client, dlq string) (*ledger, error) {
	l := &ledger{topic: ledgerTopic(dlq), done: map[string]bool{}, started: map[string]ledgerEntry{}}
	var bad error
	err := readAll(ctx, cl, adm, l.topic, func(r *kgo.Record) {
		var e ledgerEntry
		if err := json.Unmarshal(r.Value, &e); err != nil {
			bad = fmt.Errorf("ledger %s offset %d: %w", l.topic, r.Offset, err)
			return
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

func redrive(ctx context.Context, cl *kgo.Client, o redriveOptions) (redriveResult, error) {
	var res redriveResult
	adm := kadm.NewClient(cl)
	if o.batch <= 0 {
		o.batch = 500
	}
	if _, err := adm.ListEndOffsets(ctx, o.dlq); err != nil {
		return res, err
	}
	if ts, err := adm.ListTopics(ctx, o.dlq); err != nil || !ts.Has(o.dlq) {
		return res, fmt.Errorf("dead-letter topic %q does not exist", o.dlq)
	}
	lt := ledgerTopic(o.dlq)
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
	l, err := readLedger(ctx, cl, adm, o.dlq)
	if err != nil {
		return res, err
	}
	// Finish the runs that never ended: what they produced is in their
	// targets past the offsets they recorded first.
	for _, run := range sortedKeysOf(l.started) {
		e := l.started[run]
		var found []string
		for topic, from := range e.Targets {
			err := readFrom(ctx, cl, adm, topic, from, func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == redriveHeader && strings.HasPrefix(string(h.Value), o.dlq+"/") && !l.done[string(h.Value)] {
						l.done[string(h.Value)] = true
						found = append(found, string(h.Value))
					}
				}
			})
			if err != nil {
				return res, fmt.Errorf("recovering run %s: %w", run, err)
			}
		}
		res.recovered += len(found)
		if !o.dryRun {
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
	err = readAll(ctx, cl, adm, o.dlq, func(r *kgo.Record) {
		d := parseDeadLetter(r)
		switch {
		case l.done[d.fromKey]:
			res.already++
		case !o.matches(d):
			res.filtered++
		default:
			todo = append(todo, d)
		}
	})
	if err != nil || len(todo) == 0 || o.dryRun {
		res.redriven = len(todo)
		if !o.dryRun {
			res.redriven = 0
		}
		return res, err
	}
	// Payloads missing from the dead letters come from their sources.
	payloads, err := sourcePayloads(ctx, cl, adm, todo)
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
			return res, fmt.Errorf("target topic %q does not exist", t)
		}
	}
	if err := l.write(ctx, cl, "start", ledgerEntry{Run: run, Targets: targets}); err != nil {
		return res, err
	}
	batches := 0
	for i := 0; i < len(todo); i += o.batch {
		chunk := todo[i:min(i+o.batch, len(todo))]
		var recs []*kgo.Record
		var keys []string
		for _, d := range chunk {
			p, ok := payloads[d.fromKey]
			if !ok {
				res.gone++
				continue
			}
			t := o.target(d)
			r := &kgo.Record{Topic: t, Key: p.key, Value: p.value}
			r.Partition = d.srcPartition
			if n := int32(len(targets[t])); t != d.srcTopic || d.srcPartition < 0 || d.srcPartition >= n {
				r.Partition = int32(hashKey(p.key, n))
			}
			r.Headers = append(r.Headers, p.headers...)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: redriveHeader, Value: []byte(d.fromKey)})
			recs = append(recs, r)
			keys = append(keys, d.fromKey)
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
		res.redriven += len(recs)
	}
	return res, l.write(ctx, cl, "end", ledgerEntry{Run: run})
}

func (o redriveOptions) matches(d deadLetter) bool {
	if o.group != "" && d.group != o.group {
		return false
	}
	if !o.since.IsZero() && d.r.Timestamp.Before(o.since) {
		return false
	}
	if !o.until.IsZero() && !d.r.Timestamp.Before(o.until) {
		return false
	}
	for k, v := range o.headers {
		if d.headers[k] != v {
			return false
		}
	}
	return true
}

func (o redriveOptions) target(d deadLetter) string {
	if o.to != "" {
		return o.to
	}
	return d.srcTopic
}

type payload struct {
	key, value []byte
	headers    []kgo.RecordHeader
}

// sourcePayloads returns each dead letter's key, value and headers: its
// own when the group copied them, else the source record's. A source
// record that is gone has no entry.
func sourcePayloads(ctx context.Context, cl *kgo.Client, adm *kadm.Client, todo []deadLetter) (map[string]payload, error) {
	out := map[string]payload{}
	need := map[string]map[int32][]deadLetter{}
	for _, d := range todo {
		if d.hasPayload {
			p := payload{key: d.r.Key, value: d.r.Value}
			for _, h := range d.r.Headers {
				if !strings.HasPrefix(h.Key, dlqHeaderPfx) {
					p.headers = append(p.headers, h)
				}
			}
			out[d.fromKey] = p
			continue
		}
		if need[d.srcTopic] == nil {
			need[d.srcTopic] = map[int32][]deadLetter{}
		}
		need[d.srcTopic][d.srcPartition] = append(need[d.srcTopic][d.srcPartition], d)
	}
	for topic, parts := range need {
		from := map[int32]int64{}
		wanted := map[int32]map[int64][]string{}
		for p, ds := range parts {
			from[p] = ds[0].srcOffset
			wanted[p] = map[int64][]string{}
			for _, d := range ds {
				from[p] = min(from[p], d.srcOffset)
				wanted[p][d.srcOffset] = append(wanted[p][d.srcOffset], d.fromKey)
			}
		}
		err := readFrom(ctx, cl, adm, topic, from, func(r *kgo.Record) {
			for _, k := range wanted[r.Partition][r.Offset] {
				out[k] = payload{key: r.Key, value: r.Value, headers: r.Headers}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hashKey picks a partition for a record moved to another topic: by key
// (FNV-1a) like a plain partitioner would, or 0 without a key.
func hashKey(key []byte, n int32) int32 {
	if len(key) == 0 || n <= 0 {
		return 0
	}
	h := uint32(2166136261)
	for _, b := range key {
		h = (h ^ uint32(b)) * 16777619
	}
	return int32(h % uint32(n))
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
