package benchmark

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share-group runs: the same records consumed by share consumers that
// acknowledge each record explicitly, and by a classic consumer group that
// commits after each poll, in the same run so that their ratio survives
// whatever else the machine is doing; and how soon a record whose lock
// expires is delivered again.

// ShareReport is what the share runs measured.
type ShareReport struct {
	Share   Throughput `json:"share"`
	Classic Throughput `json:"classic"`
	// Ratio is share msgs/s over classic msgs/s.
	Ratio float64 `json:"ratio"`
	// LockMs is the lock duration of the redelivery run and RedeliveryMs
	// how long after acquisition the other member got the records.
	LockMs       int64   `json:"lock_ms"`
	RedeliveryMs float64 `json:"redelivery_ms"`
}

// runShare fills a topic with n 100-byte records, then measures.
func runShare(ctx context.Context, cfg Config, runID int64) (*ShareReport, error) {
	topic := fmt.Sprintf("bench-%d-share", runID)
	if err := createTopic(ctx, cfg, topic); err != nil {
		return nil, err
	}
	if _, err := produce(ctx, cfg, topic, 100, cfg.ShareRecords, kgo.AllISRAcks()); err != nil {
		return nil, err
	}
	rep := &ShareReport{}
	var err error
	group := fmt.Sprintf("bench-%d-share", runID)
	kvs := []string{"share.auto.offset.reset", "earliest"}
	if cfg.ShareMaxLocks > 0 {
		kvs = append(kvs, "share.partition.max.record.locks", strconv.Itoa(cfg.ShareMaxLocks))
	}
	if err := setShareConfigs(ctx, cfg, group, kvs...); err != nil {
		return nil, err
	}
	if rep.Share, err = shareConsume(ctx, cfg, topic, group, cfg.ShareRecords); err != nil {
		return nil, err
	}
	rep.Share.Name = fmt.Sprintf("share %d consumers, ack each", cfg.ShareConsumers)
	if rep.Classic, err = classicConsume(ctx, cfg, topic, fmt.Sprintf("bench-%d-classic", runID), cfg.ShareRecords); err != nil {
		return nil, err
	}
	rep.Classic.Name = fmt.Sprintf("classic %d consumers, commit", cfg.ShareConsumers)
	rep.Ratio = rep.Share.MsgsPerS / rep.Classic.MsgsPerS
	lock, delay, err := redelivery(ctx, cfg, runID)
	if err != nil {
		return nil, err
	}
	rep.LockMs, rep.RedeliveryMs = lock.Milliseconds(), float64(delay)/1e6
	return rep, nil
}

func setShareConfigs(ctx context.Context, cfg Config, group string, kvs ...string) error {
	cl, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for i := 0; i+1 < len(kvs); i += 2 {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kvs[i], kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			msg := ""
			if r.ErrorMessage != nil {
				msg = *r.ErrorMessage
			}
			return fmt.Errorf("group %s configs %v: %w %s", group, kvs, err, msg)
		}
	}
	return nil
}

// shareConsume runs cfg.ShareConsumers share consumers that acknowledge
// (ACCEPT) each record explicitly until n distinct records were accepted.
func shareConsume(parent context.Context, cfg Config, topic, group string, n int) (Throughput, error) {
	// seen is one bit per (partition, offset): a map of that size would
	// make the garbage collector, not the broker, the bottleneck.
	seen := make([][]atomic.Uint64, cfg.Partitions)
	for p := range seen {
		seen[p] = make([]atomic.Uint64, n/64+1)
	}
	var distinct, bytes atomic.Int64
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Add(1)
	go progress(cfg.Progress, "share consume", &distinct, n, stop, &pwg)
	defer func() { close(stop); pwg.Wait() }()
	var wg sync.WaitGroup
	errc := make(chan error, cfg.ShareConsumers)
	clients := make([]*kgo.Client, cfg.ShareConsumers)
	for i := range clients {
		cl, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
			kgo.FetchMaxWait(100*time.Millisecond), kgo.ShareMaxRecords(1000))
		if err != nil {
			return Throughput{}, err
		}
		clients[i] = cl
		defer cl.Close()
	}
	start := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && distinct.Load() < int64(n) {
				fs := cl.PollRecords(ctx, 2000)
				for _, e := range fs.Errors() {
					if !errors.Is(e.Err, context.Canceled) {
						errc <- e.Err
						cancel()
						return
					}
				}
				fs.EachRecord(func(r *kgo.Record) {
					r.Ack(kgo.AckAccept)
					if int(r.Partition) >= len(seen) || r.Offset/64 >= int64(len(seen[r.Partition])) {
						return
					}
					w, bit := &seen[r.Partition][r.Offset/64], uint64(1)<<(r.Offset%64)
					if w.Or(bit)&bit == 0 {
						bytes.Add(int64(len(r.Value)))
						if distinct.Add(1) == int64(n) {
							cancel() // wake the other consumers' polls
						}
					}
				})
			}
			fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer fcancel()
			if err := cl.FlushAcks(fctx); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errc:
		return Throughput{}, fmt.Errorf("share consume: %w", err)
	default:
	}
	if err := parent.Err(); err != nil {
		return Throughput{}, err
	}
	if distinct.Load() < int64(n) {
		return Throughput{}, fmt.Errorf("share consume: %d of %d records", distinct.Load(), n)
	}
	return throughput(n, bytes.Load(), elapsed), nil
}

// classicConsume runs as many classic group consumers, each committing its
// offsets synchronously after every poll (at-least-once), until the group
// consumed n records.
func classicConsume(parent context.Context, cfg Config, topic, group string, n int) (Throughput, error) {
	var done, bytes atomic.Int64
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Add(1)
	go progress(cfg.Progress, "classic consume", &done, n, stop, &pwg)
	defer func() { close(stop); pwg.Wait() }()
	clients := make([]*kgo.Client, cfg.ShareConsumers)
	for i := range clients {
		cl, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return Throughput{}, err
		}
		clients[i] = cl
		defer cl.Close()
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(clients))
	start := time.Now()
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && done.Load() < int64(n) {
				fs := cl.PollRecords(ctx, 2000)
				fs.EachRecord(func(r *kgo.Record) { bytes.Add(int64(len(r.Value))) })
				if k := fs.NumRecords(); k > 0 {
					if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
						errc <- err
						cancel()
						return
					}
					if done.Add(int64(k)) >= int64(n) {
						cancel()
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errc:
		return Throughput{}, fmt.Errorf("classic consume: %w", err)
	default:
	}
	if err := parent.Err(); err != nil {
		return Throughput{}, err
	}
	return throughput(n, bytes.Load(), elapsed), nil
}

// redelivery measures how soon after its lock expires a record goes to
// another member: a bare member acquires ten records of a one-partition
// topic with one ShareFetch
// and never acknowledges them; a kgo share consumer waits for them. The
// lock is 1 s when the broker allows it, else its minimum.
func redelivery(ctx context.Context, cfg Config, runID int64) (time.Duration, time.Duration, error) {
	topic, group := fmt.Sprintf("bench-%d-redelivery", runID), fmt.Sprintf("bench-%d-redelivery", runID)
	// One partition: both members are assigned it (with more partitions
	// each member would own some, and only the silent one would fetch
	// the records it let expire).
	one := cfg
	one.Partitions = 1
	if err := createTopic(ctx, one, topic); err != nil {
		return 0, 0, err
	}
	if _, err := produce(ctx, cfg, topic, 100, 10, kgo.AllISRAcks()); err != nil {
		return 0, 0, err
	}
	lock := time.Second
	if err := setShareConfigs(ctx, cfg, group, "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "1000"); err != nil {
		lock = 15 * time.Second
		if err := setShareConfigs(ctx, cfg, group, "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "15000"); err != nil {
			return 0, 0, err
		}
	}
	hog, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return 0, 0, err
	}
	defer hog.Close()
	hb := kmsg.NewPtrShareGroupHeartbeatRequest()
	hb.GroupID, hb.MemberID, hb.SubscribedTopicNames = group, "hog-"+strconv.FormatInt(runID, 36)[:8], []string{topic}
	if resp, err := hb.RequestWith(ctx, hog); err != nil || resp.ErrorCode != 0 {
		return 0, 0, fmt.Errorf("hog join: %v %v", err, resp)
	}
	md, err := kadm.NewClient(hog).Metadata(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	sf := kmsg.NewPtrShareFetchRequest()
	sf.GroupID, sf.MemberID, sf.MaxRecords, sf.BatchSize, sf.MaxBytes = &group, &hb.MemberID, 100, 100, 1<<20
	ft := kmsg.NewShareFetchRequestTopic()
	ft.TopicID = md.Topics[topic].ID
	ft.Partitions = append(ft.Partitions, kmsg.ShareFetchRequestTopicPartition{Partition: 0})
	sf.Topics = append(sf.Topics, ft)
	resp, err := sf.RequestWith(ctx, hog.Broker(int(md.Brokers[0].NodeID)))
	if err != nil || resp.ErrorCode != 0 {
		return 0, 0, fmt.Errorf("hog fetch: %v %v", err, resp)
	}
	acquired := time.Now()
	got := 0
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			for _, ar := range rp.AcquiredRecords {
				got += int(ar.LastOffset - ar.FirstOffset + 1)
			}
		}
	}
	if got < 10 {
		return 0, 0, fmt.Errorf("the bare member acquired %d of 10 records in one fetch", got)
	}
	other, err := cfg.newClient(kgo.SeedBrokers(cfg.Brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return 0, 0, err
	}
	defer other.Close()
	n := 0
	for n < 10 {
		fs := other.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) {
			r.Ack(kgo.AckAccept)
			n++
		})
	}
	delay := time.Since(acquired)
	other.FlushAcks(ctx)
	return lock, delay, nil
}
