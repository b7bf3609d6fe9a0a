package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/internal/verify"
)

// opts are the producer's settings: what the mode's name promises the
// producer does, through the target's fault proxies (which do the TLS, if
// any, towards the broker; the producer authenticates through them).
func (p producerSpec) opts(t *target, topic string) []kgo.Opt {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(t.brokers...),
		kgo.Dialer(t.dial),
		kgo.DefaultProduceTopic(topic),
		kgo.ProduceRequestTimeout(produceTimeout),
		kgo.RequestTimeoutOverhead(timeoutOverhead),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.ProducerLinger(0),
	}, t.sec.SASLOpts()...)
	if !p.idempotent {
		// Without idempotence a lost ack the producer retries becomes a
		// duplicate in the log: the textbook at-least-once producer.
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.RequiredAcks(p.acks))
	}
	if p.oneTry {
		return append(opts, kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(5*time.Second))
	}
	// Retry until acknowledged.
	return append(opts, kgo.RecordDeliveryTimeout(60*time.Second))
}

// produce sends the N events one at a time, arming the plan's faults before
// the events they belong to.
func (r *run) produce(ctx context.Context, p plan) error {
	cl, err := kgo.NewClient(r.mode.producer.opts(r.t, r.topic)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var bg sync.WaitGroup
	defer bg.Wait() // a kill or pause in progress finishes (and heals) before the mode ends
	for i := range r.cfg.N {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.armFaults(p, i, &bg)
		r.send(ctx, cl, i)
	}
	return nil
}

// armFaults arms the plan's faults for event i: proxy rules for the produce
// request about to go out, and a broker kill or pause in the background
// (joined through bg).
func (r *run) armFaults(p plan, i int, bg *sync.WaitGroup) {
	if p.lostAck[i] && r.cfg.Break == BreakBrokerDuplicates {
		r.t.each(func(px *verify.Proxy) {
			px.Add(verify.Rule{Kind: verify.FaultDuplicateProduce, APIKey: verify.APIProduce, Count: 1})
		})
		r.inject("broken-broker", fmt.Sprintf("produce of event %d replayed without its producer id", i))
	} else if p.lostAck[i] {
		r.t.each(func(px *verify.Proxy) {
			px.Add(verify.Rule{Kind: verify.FaultDropResponse, APIKey: verify.APIProduce, Count: 1})
		})
		r.inject(string(FaultLostAck), fmt.Sprintf("response to the produce of event %d dropped", i))
	}
	if p.ackTimeout[i] {
		r.t.each(func(px *verify.Proxy) {
			px.Add(verify.Rule{Kind: verify.FaultDelayResponse, APIKey: verify.APIProduce, Delay: ackDelay, Count: 1})
		})
		r.inject(string(FaultAckTimeout), fmt.Sprintf("response to the produce of event %d delayed %v", i, ackDelay))
	}
	if down, ok := p.kill[i]; ok && r.t.proc != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			r.killBroker(down)
		}()
	}
	if d, ok := p.pause[i]; ok && r.t.proc != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			r.pauseBroker(d)
		}()
	}
}

// send produces event i and records the attempt and its outcome in the
// producer's history.
func (r *run) send(ctx context.Context, cl *kgo.Client, i int) {
	e := Event{ID: fmt.Sprintf("evt-%d", i), Customer: fmt.Sprintf("cus_%02d", i%r.cfg.Customers), Cents: int64(100 + (i*37)%900)}
	now := time.Now()
	e.SentNs = now.UnixNano()
	r.mu.Lock()
	r.sentAt[e.ID] = now
	r.events[e.ID] = e
	r.mu.Unlock()
	v, _ := json.Marshal(e)
	rec := &kgo.Record{Key: []byte(e.Customer), Value: v, Headers: []kgo.RecordHeader{{Key: dedupe.DefaultKeyHeader, Value: []byte(e.ID)}}}
	r.rec.Invoke(0, verify.FSend, verify.Record{Value: e.ID, Partition: -1, Offset: -1})
	got, err := cl.ProduceSync(ctx, rec).First()
	if err != nil {
		r.rec.Complete(0, verify.SendOutcome(err), verify.FSend, verify.Record{Value: e.ID, Partition: -1, Offset: -1}, err)
		return
	}
	r.rec.Complete(0, verify.OK, verify.FSend, verify.Record{Value: e.ID, Partition: got.Partition, Offset: got.Offset}, nil)
}

// killBroker is the broker-kill fault: SIGKILL, down for a while, then a
// restart on the same data directory.
func (r *run) killBroker(down time.Duration) {
	proc := r.t.proc
	r.inject(string(FaultBrokerKill), fmt.Sprintf("SIGKILL pid %d, down %v", proc.Pid(), down))
	r.cfg.Logf("lab: %s: SIGKILL broker pid %d, down %v", r.mode.mode, proc.Pid(), down)
	_ = proc.Kill()
	time.Sleep(down)
	if err := retry(context.Background(), func() error { return proc.Start(context.Background()) }); err != nil {
		r.cfg.Logf("lab: %s: broker restart failed: %v", r.mode.mode, err)
	}
}

// pauseBroker is the pause fault: SIGSTOP long enough for requests to time
// out, then SIGCONT.
func (r *run) pauseBroker(d time.Duration) {
	pid := r.t.proc.Pid()
	if pid == 0 {
		return
	}
	r.inject(string(FaultPause), fmt.Sprintf("SIGSTOP pid %d for %v", pid, d))
	r.cfg.Logf("lab: %s: SIGSTOP broker pid %d for %v", r.mode.mode, pid, d)
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	time.Sleep(d)
	_ = syscall.Kill(pid, syscall.SIGCONT)
}

// writeEnd tells the worker where the input ends, once the producer is
// done. The high watermark is the durable end of the log, so with acks=1 it
// can trail the last acknowledgement for a moment: wait (a bounded time)
// until it covers every acknowledged offset. If it never does, the input
// check reports the acknowledged records the broker lost.
func (r *run) writeEnd(ctx context.Context) error {
	need := map[int32]int64{}
	for _, op := range r.rec.History() {
		if v, ok := op.Value.(verify.Record); ok && op.F == verify.FSend && op.Type == verify.OK {
			need[v.Partition] = max(need[v.Partition], v.Offset+1)
		}
	}
	end := map[int32]int64{}
	for attempt := 0; ; attempt++ {
		if err := r.t.admin(ctx, func(adm *kadm.Client) error {
			offs, err := adm.ListEndOffsets(ctx, r.topic)
			if err == nil {
				err = offs.Error()
			}
			if err != nil {
				return err
			}
			offs.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
			return nil
		}); err != nil {
			return fmt.Errorf("end offsets: %w", err)
		}
		covered := true
		for p, n := range need {
			if end[p] < n {
				covered = false
			}
		}
		if covered || attempt >= 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.Marshal(end)
	tmp := filepath.Join(r.dir, "end.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, "end.json"))
}
