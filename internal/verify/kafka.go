package verify

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SendOutcome classifies the result of producing one record. Only errors
// that guarantee the record was never appended are Fail: the client refused
// it before sending, or the broker rejected the batch as invalid, which it
// would have done on every attempt. Everything else (timeouts, retries
// exhausted, lost connections, a killed broker, and fencing, which can
// answer a retry whose first attempt was appended) is Info, because the
// batch may have been appended before the answer was lost.
func SendOutcome(err error) Type {
	if err == nil {
		return OK
	}
	if errors.Is(err, kgo.ErrMaxBuffered) {
		return Fail
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
			kerr.InvalidTopicException, kerr.TopicAuthorizationFailed,
			kerr.InvalidRequiredAcks, kerr.UnsupportedForMessageFormat:
			return Fail
		}
	}
	return Info
}

// Drain reads every partition of topic from its log start offset up to the
// high watermark it has when Drain starts, read_uncommitted, with a fresh
// client on seeds, and returns the data records (not transaction markers) in
// partition and offset order. It is the final "read everything" phase of a
// test, after the faults have healed. opts are added to the options of its
// clients (the one that lists the offsets and the reader): how to connect
// (TLS, SASL) and the like; for read_committed use DrainCommitted, which
// also stops at the right offset.
func Drain(ctx context.Context, seeds []string, topic string, opts ...kgo.Opt) ([]Record, error) {
	return drain(ctx, seeds, topic, false, opts)
}

// DrainCommitted is Drain for a read_committed reader: it reads up to the
// last stable offset, and aborted transactions are not returned.
func DrainCommitted(ctx context.Context, seeds []string, topic string, opts ...kgo.Opt) ([]Record, error) {
	return drain(ctx, seeds, topic, true, append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
}

func drain(ctx context.Context, seeds []string, topic string, committed bool, opts []kgo.Opt) ([]Record, error) {
	adm, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		return nil, err
	}
	admin := kadm.NewClient(adm)
	starts, err := admin.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		if committed {
			ends, err = admin.ListCommittedOffsets(ctx, topic)
		} else {
			ends, err = admin.ListEndOffsets(ctx, topic)
		}
		if err == nil {
			err = ends.Error()
		}
	}
	adm.Close()
	if err != nil {
		return nil, fmt.Errorf("verify: drain %s: list offsets: %w", topic, err)
	}

	want := map[int32]int64{} // partition → high watermark still to reach
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > start.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(start.Offset)
		}
	})
	var out []Record
	if len(want) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		// The last offset below the end may be a transaction marker: the
		// drain must see it to know it is done, and then not return it.
		kgo.KeepControlRecords(),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	byPartition := map[int32][]Record{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: drain %s: %w (still waiting for %v)", topic, err, want)
		}
		// Fetch errors are retried by the client; they only matter if ctx
		// expires, which is reported above with what is still missing.
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				byPartition[r.Partition] = append(byPartition[r.Partition], Record{Value: string(r.Value), Partition: r.Partition, Offset: r.Offset})
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	for _, p := range slices.Sorted(maps.Keys(byPartition)) {
		out = append(out, byPartition[p]...)
	}
	return out, nil
}
