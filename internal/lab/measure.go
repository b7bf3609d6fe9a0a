package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/verify"
)

// measure fills res from the producer's history, the deliveries file, where
// the effects happened (the scenario's sink, or the output topic), and a
// drain of the input topic.
func (r *run) measure(ctx context.Context, res *ModeResult) error {
	acked := r.countSends(res)
	deliveries, committedAt, err := readDeliveries(filepath.Join(r.dir, "deliveries.jsonl"))
	if err != nil {
		return err
	}
	for _, n := range deliveries {
		res.DupDeliveries += max(0, n-1)
	}
	effects, err := r.effects(ctx, committedAt, res)
	if err != nil {
		return err
	}
	r.countEffects(effects, acked, res)
	r.checkInput(ctx, res)
	return nil
}

// countSends counts the events sent and returns the acknowledged ones.
func (r *run) countSends(res *ModeResult) map[string]bool {
	acked := map[string]bool{}
	for _, op := range r.rec.History() {
		if op.F == verify.FSend && op.Type == verify.Invoke {
			res.Sent++
		}
		if op.F == verify.FSend && op.Type == verify.OK {
			acked[op.Value.(verify.Record).Value] = true
		}
	}
	res.Acked = len(acked)
	return acked
}

// effects returns event id → the times its side effect happened.
func (r *run) effects(ctx context.Context, committedAt map[string]time.Time, res *ModeResult) (map[string][]time.Time, error) {
	if !r.mode.effectsInOutput {
		return r.sink.effects(ctx, r, res)
	}
	values, err := readCommitted(ctx, r.t.brokers, r.output, r.t.sec.Opts()...)
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	return r.scenario.readOutput(values, committedAt, res), nil
}

// countEffects counts duplicate effects and events lost (acknowledged or
// not), and the latency from each send to its first effect.
func (r *run) countEffects(effects map[string][]time.Time, acked map[string]bool, res *ModeResult) {
	var lat []time.Duration
	var first, last time.Time
	for id, at := range effects {
		res.DupEffects += max(0, len(at)-1)
		sent, ok := r.sentAt[id]
		if !ok || len(at) == 0 {
			continue
		}
		e := slices.MinFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		if !e.IsZero() {
			lat = append(lat, e.Sub(sent))
			if e.After(last) {
				last = e
			}
		}
	}
	for id, sent := range r.sentAt {
		if first.IsZero() || sent.Before(first) {
			first = sent
		}
		if len(effects[id]) == 0 {
			if acked[id] {
				res.Lost++
			} else {
				res.LostUnacked++
			}
		}
	}
	if len(lat) > 0 && last.After(first) {
		res.Throughput = float64(len(lat)) / last.Sub(first).Seconds()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.P50 = Duration(lat[len(lat)*50/100])
		res.P99 = Duration(lat[min(len(lat)-1, len(lat)*99/100)])
	}
}

// checkInput is the broker's side: every acknowledged event is in the input
// topic (and, from an idempotent producer, only once).
func (r *run) checkInput(ctx context.Context, res *ModeResult) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r.rec.Invoke(1, verify.FPoll, nil)
	rs, err := verify.Drain(dctx, r.t.brokers, r.topic, r.t.sec.Opts()...)
	if err != nil {
		res.Log = "input topic not drained: " + err.Error()
		return
	}
	var read []verify.Record
	var input []Event
	for _, x := range rs {
		var e Event
		if json.Unmarshal([]byte(x.Value), &e) == nil {
			read = append(read, verify.Record{Value: e.ID, Partition: x.Partition, Offset: x.Offset})
			input = append(input, e)
		}
	}
	r.rec.Complete(1, verify.OK, verify.FPoll, read, nil)
	set := verify.CheckSet(r.rec.History())
	res.LogOK = len(set.Lost) == 0 && len(set.Unexpected) == 0
	if r.mode.producer.idempotent {
		// A retry must never land twice.
		res.LogOK = res.LogOK && len(set.Duplicated) == 0
	}
	res.Log = fmt.Sprintf("%d acknowledged, %d in the log, %d lost by the broker, %d unexpected, %d written more than once",
		set.Acknowledged, set.Read, len(set.Lost), len(set.Unexpected), len(set.Duplicated))
	if r.scenario.fromInput != nil {
		r.scenario.fromInput(input, res)
	}
}

// readDeliveries counts deliveries per event and the first commit time of
// each event (transactional mode), skipping a torn last line.
func readDeliveries(path string) (map[string]int, map[string]time.Time, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	n := map[string]int{}
	committed := map[string]time.Time{}
	for _, line := range strings.Split(string(b), "\n") {
		var l deliveryLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l.Event != "" {
			n[l.Event]++
		}
		for _, id := range l.Committed {
			if _, ok := committed[id]; !ok {
				committed[id] = time.Unix(0, l.T)
			}
		}
	}
	return n, committed, nil
}

// readCommitted returns the value of every committed record of topic
// (read_committed, up to the last stable offset), in offset order per
// partition. It retries while the broker restarts, since a worker restores
// its state with it while the lab kills the broker, for 30 s at most. opts
// are how to connect.
func readCommitted(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rs []verify.Record
	if err := retry(ctx, func() error {
		var err error
		rs, err = verify.DrainCommitted(ctx, brokers, topic, opts...)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([][]byte, len(rs))
	for i, x := range rs {
		out[i] = []byte(x.Value)
	}
	return out, nil
}

// progress counts the events sent and effected so far, for the progress
// line.
func (r *run) progress() (sent, effected int) {
	r.mu.Lock()
	sent = len(r.sentAt)
	r.mu.Unlock()
	n, ok := 0, false
	if r.sink != nil {
		n, ok = r.sink.effected()
	}
	if !ok {
		n = countLines(filepath.Join(r.dir, "deliveries.jsonl"))
	}
	return sent, min(n, sent)
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
