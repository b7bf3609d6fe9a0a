package lab

// Scenario "queue" is the job queue every SQS, RabbitMQ or NATS user runs:
// each event is a job whose effect is recorded at the lab's gateway (one
// charge per job done). Some jobs fail once (a transient error) and some
// always fail (poison). The same workload runs through a classic consumer
// group with at-least-once commits, which retries a failing job in place
// (three attempts) and then publishes it to a dead-letter topic itself, as
// frameworks do, holding up every job behind it in its partition; and
// through a share group (KIP-932), which releases a failing job to be
// redelivered, possibly to another member, while the jobs behind it go on,
// and whose broker dead-letters it after the delivery count limit
// (KIP-1191). The table adds what the comparison is about: jobs blocked
// behind a poisoned one and jobs dead-lettered.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/verify"
)

// ScenarioQueue is the job-queue scenario.
const ScenarioQueue = "queue"

// Queue scenario knobs.
const (
	queueAttempts   = 3 // a classic consumer's attempts before it dead-letters a job
	queueRetryPause = 100 * time.Millisecond
	queueLimit      = 5 // the share group's share.delivery.count.limit (Kafka's default)
)

func init() {
	registerScenario(&scenarioSpec{
		name:         ScenarioQueue,
		effectColumn: "DOUBLE DONE",
		twice:        "job done twice",
		atomic:       "offsets and effects",
		promises: map[Mode]string{
			AtLeastOnce: "no acknowledged job lost (done or dead-lettered); a job may be done twice; failing jobs retried in place, holding up their partition",
		},
		columns: []column{
			{"BLOCKED", func(m ModeResult) string { return strconv.Itoa(m.Counts["blocked"]) }},
			{"DEAD-LETTERED", func(m ModeResult) string { return strconv.Itoa(m.Counts["dead_lettered"]) }},
		},
		openSink: func(r *run) (sink, error) {
			gw, err := StartGateway()
			if err != nil {
				return nil, err
			}
			return queueSink{gw: gw}, nil
		},
		apply: doJob,
	})
}

// jobFate is decided by the job's id, the same in every mode and run: about
// one job in twenty-five is poison, one in ten fails on its first attempt.
func jobFate(id string) (poison, flaky bool) {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32()
	return v%25 == 0, v%10 == 3
}

var errJobFailed = errors.New("job failed")

// attempts counts, in this worker process, each job's attempts.
var attempts = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func attempt(id string) int {
	attempts.Lock()
	defer attempts.Unlock()
	attempts.n[id]++
	return attempts.n[id]
}

// tryJob runs a job once: poison always fails, a flaky job fails on its
// first attempt (first is whether this is it), the rest are done at the
// gateway.
func tryJob(ctx context.Context, w *worker, e Event, first bool) error {
	if poison, flaky := jobFate(e.ID); poison || (flaky && first) {
		return errJobFailed
	}
	return PostCharge(ctx, w.spec.Sink, chargeOf(e), "")
}

// shareDelivery is the delivery count of the record a share-group worker
// is working on (the broker's count: a flaky job fails on its first
// delivery only, whoever got it).
var shareDelivery int32

// doJob is the queue's effect. A share-group consumer tries once and lets
// the broker redeliver; any other consumer retries in place and then
// dead-letters the job itself, to <topic>-dlq.
func doJob(ctx context.Context, w *worker, e Event, _ string) error {
	if w.spec.Mode == ShareGroup {
		return tryJob(ctx, w, e, shareDelivery <= 1)
	}
	var err error
	for i := range queueAttempts {
		if i > 0 {
			time.Sleep(queueRetryPause)
		}
		if err = tryJob(ctx, w, e, attempt(e.ID) == 1); !errors.Is(err, errJobFailed) {
			return err
		}
	}
	return w.deadLetter(ctx, e)
}

// deadLetter publishes a job a classic consumer gave up on to its
// dead-letter topic (acks=all), the way consumer frameworks do.
func (w *worker) deadLetter(ctx context.Context, e Event) error {
	cl, err := kgo.NewClient(w.connOpts(kgo.AllowAutoTopicCreation())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	v, _ := json.Marshal(e)
	return cl.ProduceSync(ctx, &kgo.Record{Topic: w.spec.Topic + "-dlq", Key: []byte(e.ID), Value: v}).FirstErr()
}

// queueSink counts jobs done at the gateway and, from the dead-letter
// topics, the jobs dead-lettered (a settled outcome, not a loss) and the
// jobs held up behind a poisoned one.
type queueSink struct{ gw *Gateway }

func (s queueSink) address() string { return s.gw.URL() }

func (s queueSink) effected() (int, bool) { return len(s.gw.Stats().Charges), true }

func (s queueSink) close() { s.gw.Close() }

func (s queueSink) effects(ctx context.Context, r *run, res *ModeResult) (map[string][]time.Time, error) {
	effects := s.gw.Stats().Charges
	dead, err := deadLettered(ctx, r)
	if err != nil {
		return nil, err
	}
	if res.Counts == nil {
		res.Counts = map[string]int{}
	}
	res.Counts["dead_lettered"] = len(dead)
	for id, at := range dead {
		effects[id] = append(effects[id], at)
	}
	res.Counts["blocked"], err = blockedBehind(r, dead)
	return effects, err
}

// deadLettered returns each dead-lettered job and when it was
// dead-lettered: the classic consumer's <topic>-dlq (the job as value), or
// the share group's dlq.<topic> (KIP-1191 headers naming the source
// partition and offset).
func deadLettered(ctx context.Context, r *run) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	byPos := map[string]string{}
	input, err := verify.Drain(ctx, r.t.brokers, r.topic, r.t.sec.Opts()...)
	if err != nil {
		return nil, err
	}
	for _, x := range input {
		var e Event
		if json.Unmarshal([]byte(x.Value), &e) == nil {
			byPos[fmt.Sprintf("%d/%d", x.Partition, x.Offset)] = e.ID
		}
	}
	for _, topic := range []string{r.topic + "-dlq", "dlq." + r.topic} {
		err := readTopic(ctx, r.t.opts(), topic, func(rec *kgo.Record) {
			id := string(rec.Key)
			var p, o string
			for _, h := range rec.Headers {
				switch h.Key {
				case "__dlq.errors.partition":
					p = string(h.Value)
				case "__dlq.errors.offset":
					o = string(h.Value)
				}
			}
			if p != "" {
				id = byPos[p+"/"+o]
			}
			if _, ok := out[id]; !ok && id != "" {
				out[id] = rec.Timestamp
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readTopic reads a topic from its start to its end now (nothing if it
// does not exist).
func readTopic(ctx context.Context, conn []kgo.Opt, topic string, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil // no such topic, or empty: nothing dead-lettered
	}
	rd, err := kgo.NewClient(append(slices.Clone(conn), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return err
	}
	defer rd.Close()
	for len(want) > 0 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			fn(r)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return ctx.Err()
}

// blockedBehind counts the jobs held up by a poisoned one: jobs of its
// partition after it, already produced when it was first delivered, whose
// first delivery came only after it was dead-lettered.
func blockedBehind(r *run, dead map[string]time.Time) (int, error) {
	type pos struct {
		p     int32
		o     int64
		first time.Time
	}
	at := map[string]*pos{}
	err := eachDelivery(r, func(id string, p int32, o int64, t time.Time) {
		if d := at[id]; d == nil {
			at[id] = &pos{p, o, t}
		}
	})
	if err != nil {
		return 0, err
	}
	blocked := map[string]bool{}
	for id, deadAt := range dead {
		poison := at[id]
		if poison == nil {
			continue
		}
		for other, d := range at {
			sent, ok := r.sentAt[other]
			if other == id || !ok || d.p != poison.p || d.o < poison.o {
				continue
			}
			if sent.Before(poison.first) && d.first.After(deadAt) {
				blocked[other] = true
			}
		}
	}
	return len(blocked), nil
}

// eachDelivery calls fn for each delivery in the worker's deliveries file,
// in the order they were written (a torn last line is skipped).
func eachDelivery(r *run, fn func(id string, p int32, o int64, t time.Time)) error {
	b, err := os.ReadFile(filepath.Join(r.dir, "deliveries.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l deliveryLine
		if json.Unmarshal(line, &l) == nil && l.Event != "" {
			fn(l.Event, l.Partition, l.Offset, time.Unix(0, l.T))
		}
	}
	return nil
}
