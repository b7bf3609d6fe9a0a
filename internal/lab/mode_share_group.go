package lab

// Share group (KIP-932): the consumer acknowledges each record by itself,
// ACCEPT after its effect, RELEASE when the effect failed; a released or
// abandoned record (its consumer killed) is redelivered, possibly to another
// member, and one that keeps failing is archived at the delivery count
// limit and copied to the dead-letter topic dlq.<topic> (KIP-1191) by the
// broker. Failures do not hold up the records behind them. A crash between
// the effect and the ACCEPT redoes the effect: at-least-once per record.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ShareGroup consumes through a share group with per-record
// acknowledgements and the broker's dead-letter topic.
const ShareGroup Mode = "share-group"

func init() {
	registerMode(&modeSpec{
		mode:     ShareGroup,
		producer: producerSpec{idempotent: true, acks: kgo.AllISRAcks()},
		promise: promiseSpec{
			words: func(sc *scenarioSpec) string {
				return "no acknowledged event lost (done or dead-lettered by the broker); " + sc.twice + " after a crash allowed; failures do not hold up other records"
			},
			mayDuplicate: true,
		},
		consume: consumeShare,
	})
}

// consumeShare is the share consumer loop. It is done once the producer
// finished and the group's start offset passed every record of every
// partition (each acknowledged or archived).
func consumeShare(ctx context.Context, w *worker) error {
	adm, err := kgo.NewClient(w.connOpts()...)
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := retry(ctx, func() error { return setupShareGroup(ctx, adm, w.spec.Group, w.spec.Topic) }); err != nil {
		return err
	}
	cl, err := kgo.NewClient(w.connOpts(kgo.ShareGroup(w.spec.Group), kgo.ConsumeTopics(w.spec.Topic),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	lastCheck := time.Time{}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(lastCheck) > 300*time.Millisecond {
			lastCheck = time.Now()
			if shareDone(ctx, w, kadm.NewClient(adm)) {
				return nil
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		fs := cl.PollRecords(pctx, 100)
		cancel()
		for _, r := range fs.Records() {
			var e Event
			if json.Unmarshal(r.Value, &e) != nil {
				r.Ack(kgo.AckReject)
				continue
			}
			crashHere := w.delivered(r, e)
			shareDelivery = r.DeliveryCount()
			ack := kgo.AckAccept
			if err := w.apply(ctx, e, ""); err != nil {
				if !errors.Is(err, errJobFailed) {
					return err
				}
				ack = kgo.AckRelease
			} else if crashHere {
				crash() // effect done, ACCEPT never sent: redelivered
			}
			// One record at a time, like the classic mode's commits.
			r.Ack(ack)
			if err := cl.FlushAcks(ctx); err != nil {
				return err
			}
		}
	}
}

// setupShareGroup makes the group start at the earliest record, dead-letter
// at the delivery count limit to dlq.<topic> (created with
// errors.deadletterqueue.group.enable=true).
func setupShareGroup(ctx context.Context, cl *kgo.Client, group, topic string) error {
	dlq := "dlq." + topic
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"errors.deadletterqueue.group.enable": kmsg.StringPtr("true")}, dlq)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for _, kv := range [][2]string{
		{"share.auto.offset.reset", "earliest"}, {"share.delivery.count.limit", strconv.Itoa(queueLimit)},
		{"errors.deadletterqueue.topic.name", dlq},
		// Like the classic mode's 6 s session timeout: a killed
		// consumer's member leaves soon, and the others hear of the new
		// assignment within a second.
		{"share.session.timeout.ms", "6000"}, {"share.heartbeat.interval.ms", "1000"},
	} {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kv[0], kmsg.StringPtr(kv[1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	aresp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(aresp.Resources[0].ErrorCode)
}

// shareDone reports whether the producer finished and the group's start
// offsets reached the end of every partition it wrote.
func shareDone(ctx context.Context, w *worker, adm *kadm.Client) bool {
	b, err := os.ReadFile(w.spec.EndFile)
	if err != nil {
		return false // the producer has not finished
	}
	var end map[int32]int64
	if json.Unmarshal(b, &end) != nil {
		return false
	}
	offs, err := adm.DescribeShareGroupOffsets(ctx, w.spec.Group)
	if err != nil || offs[w.spec.Group].Err != nil {
		return false
	}
	for p, end := range end {
		o, ok := offs[w.spec.Group].Offsets.Lookup(w.spec.Topic, p)
		if end > 0 && (!ok || o.StartOffset < end) {
			return false
		}
	}
	return true
}
