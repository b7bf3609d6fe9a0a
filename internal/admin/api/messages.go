package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Bounds of one page of messages: a browser asks for pages, not logs.
const (
	DefaultLimit = 50
	// MaxLimit is the most records one page holds; larger limits are
	// lowered to it.
	MaxLimit = 500
	// MaxPageBytes bounds the keys and values of one page; the page ends
	// after the record that crosses it (so a page has at least one record).
	MaxPageBytes = 4 << 20
)

// Data is a key, value or header value as shown: JSON (pretty printed),
// UTF-8 text, or base64 when neither. Null is absent (a tombstone's value).
type Data struct {
	Format string `json:"format"` // json, text, base64 or null
	Data   string `json:"data"`
	Size   int    `json:"size"`
}

func showData(b []byte, tryJSON bool) Data {
	switch {
	case b == nil:
		return Data{Format: "null"}
	case tryJSON && json.Valid(b) && len(bytes.TrimSpace(b)) > 0 && (bytes.TrimSpace(b)[0] == '{' || bytes.TrimSpace(b)[0] == '['):
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err == nil {
			return Data{Format: "json", Data: buf.String(), Size: len(b)}
		}
	}
	if utf8.Valid(b) {
		return Data{Format: "text", Data: string(b), Size: len(b)}
	}
	return Data{Format: "base64", Data: base64.StdEncoding.EncodeToString(b), Size: len(b)}
}

// Header is a record header as shown.
type Header struct {
	Key   string `json:"key"`
	Value Data   `json:"value"`
}

// Message is one record as shown.
type Message struct {
	Partition     int32     `json:"partition"`
	Offset        int64     `json:"offset"`
	Timestamp     time.Time `json:"timestamp"`
	TimestampType string    `json:"timestamp_type"`
	Key           Data      `json:"key"`
	Value         Data      `json:"value"`
	Headers       []Header  `json:"headers"`
	ProducerID    int64     `json:"producer_id"`
	Transactional bool      `json:"transactional"`
}

// MessagesRequest says where a page starts: at Offset, or, when Timestamp
// is set, at the first record at or after that time (ms since the epoch).
type MessagesRequest struct {
	Topic     string
	Partition int32
	Offset    *int64
	Timestamp *int64
	Limit     int
	// ReadCommitted hides records of open and aborted transactions.
	ReadCommitted bool
}

// MessagesPage is what GET /v1/topics/{name}/partitions/{p}/messages answers.
type MessagesPage struct {
	Topic          string    `json:"topic"`
	Partition      int32     `json:"partition"`
	LogStartOffset int64     `json:"log_start_offset"`
	HighWatermark  int64     `json:"high_watermark"`
	StartOffset    int64     `json:"start_offset"` // where this page began reading
	NextOffset     int64     `json:"next_offset"`  // where the next page begins
	Limit          int       `json:"limit"`
	Messages       []Message `json:"messages"`
}

// Messages reads one page of a partition with Fetch requests.
func (s *Service) Messages(ctx context.Context, c *Conn, req MessagesRequest) (MessagesPage, error) {
	if req.Limit <= 0 {
		req.Limit = DefaultLimit
	}
	req.Limit = min(req.Limit, MaxLimit)
	td, err := topicMetadata(ctx, c, req.Topic)
	if err != nil {
		return MessagesPage{}, err
	}
	if _, ok := td.Partitions[req.Partition]; !ok {
		return MessagesPage{}, notFound("topic %q has no partition %d (it has %d)", req.Topic, req.Partition, len(td.Partitions))
	}
	offs, err := s.offsets(ctx, c, req.Topic)
	if err != nil {
		return MessagesPage{}, err
	}
	po := offs[tp{req.Topic, req.Partition}]
	page := MessagesPage{Topic: req.Topic, Partition: req.Partition, LogStartOffset: po.LogStartOffset,
		HighWatermark: po.HighWatermark, Limit: req.Limit, Messages: []Message{}}
	from := po.LogStartOffset
	switch {
	case req.Timestamp != nil:
		lo, err := c.Admin.ListOffsetsAfterMilli(ctx, *req.Timestamp, req.Topic)
		if err != nil {
			return MessagesPage{}, err
		}
		o, ok := lo.Lookup(req.Topic, req.Partition)
		if !ok {
			return MessagesPage{}, notFound("no offsets for %s-%d", req.Topic, req.Partition)
		}
		if o.Err != nil {
			return MessagesPage{}, o.Err
		}
		from = o.Offset
		if from < 0 { // no record at or after the time
			from = po.HighWatermark
		}
	case req.Offset != nil:
		from = max(*req.Offset, po.LogStartOffset)
	}
	page.StartOffset, page.NextOffset = from, from
	iso := kgo.ReadUncommitted()
	if req.ReadCommitted {
		iso = kgo.ReadCommitted()
	}
	size := 0
	for len(page.Messages) < req.Limit && size < MaxPageBytes && page.NextOffset < po.HighWatermark {
		// Ask for about what the page still needs (1 KiB a record, at
		// least 64 KiB, at most 1 MiB): a larger answer only costs the
		// broker reads and this process decoding records nobody sees
		// (the broker still returns one whole batch, KIP-74).
		want := min(1<<20, max(64<<10, (req.Limit-len(page.Messages))<<10))
		recs, next, err := fetchOnce(ctx, c, td, req.Partition, page.NextOffset, iso, int32(want))
		if err != nil {
			return MessagesPage{}, err
		}
		for _, r := range recs {
			if len(page.Messages) >= req.Limit || size >= MaxPageBytes {
				break
			}
			page.Messages = append(page.Messages, message(r))
			size += len(r.Key) + len(r.Value)
			page.NextOffset = r.Offset + 1
		}
		if len(page.Messages) >= req.Limit || size >= MaxPageBytes {
			break
		}
		if next <= page.NextOffset { // nothing more to read now
			break
		}
		page.NextOffset = next
	}
	return page, nil
}

// fetchOnce sends one Fetch for one partition from offset and decodes it:
// the records at or after offset, and where the next fetch starts.
func fetchOnce(ctx context.Context, c *Conn, td kadm.TopicDetail, partition int32, offset int64, iso kgo.IsolationLevel, maxBytes int32) ([]*kgo.Record, int64, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 0
	req.MaxBytes = maxBytes
	if iso == kgo.ReadCommitted() {
		req.IsolationLevel = 1
	}
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = td.Topic, td.ID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, maxBytes
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.Client)
	if err != nil {
		return nil, offset, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, offset, err
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			p := &resp.Topics[i].Partitions[j]
			if p.Partition != partition {
				continue
			}
			fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: offset, IsolationLevel: iso, Topic: td.Topic, Partition: partition,
			}, p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil {
				return nil, offset, fp.Err
			}
			var out []*kgo.Record
			for _, r := range fp.Records {
				if r.Offset >= offset {
					out = append(out, r)
				}
			}
			return out, next, nil
		}
	}
	return nil, offset, nil
}

func message(r *kgo.Record) Message {
	m := Message{
		Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(),
		TimestampType: "create_time", Key: showData(r.Key, true), Value: showData(r.Value, true),
		Headers: []Header{}, ProducerID: r.ProducerID, Transactional: r.Attrs.IsTransactional(),
	}
	if r.Attrs.TimestampType() == 1 {
		m.TimestampType = "log_append_time"
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, Header{Key: h.Key, Value: showData(h.Value, false)})
	}
	return m
}

// ProduceRequest is the body of POST /v1/topics/{name}/messages: one test
// record. Key and value are UTF-8 text unless ValueBase64/KeyBase64 say
// they are base64. Without a partition, the record is placed as a Kafka
// producer places it (by the key's hash; sticky without a key).
type ProduceRequest struct {
	Partition   *int32  `json:"partition"`
	Key         *string `json:"key"`
	KeyBase64   bool    `json:"key_base64"`
	Value       *string `json:"value"`
	ValueBase64 bool    `json:"value_base64"`
	Headers     []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"headers"`
}

// Produced is what a produce answers.
type Produced struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`
}

// Produce writes one record with acks=all.
func (s *Service) Produce(ctx context.Context, c *Conn, topic string, req ProduceRequest) (Produced, error) {
	td, err := topicMetadata(ctx, c, topic)
	if err != nil {
		return Produced{}, err
	}
	r := &kgo.Record{Topic: topic}
	decode := func(what string, v *string, b64 bool) ([]byte, error) {
		if v == nil {
			return nil, nil
		}
		if !b64 {
			return []byte(*v), nil
		}
		out, err := base64.StdEncoding.DecodeString(*v)
		if err != nil {
			return nil, badRequest("%s is not base64: %v", what, err)
		}
		return out, nil
	}
	if r.Key, err = decode("key", req.Key, req.KeyBase64); err != nil {
		return Produced{}, err
	}
	if r.Value, err = decode("value", req.Value, req.ValueBase64); err != nil {
		return Produced{}, err
	}
	for _, h := range req.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	n := len(td.Partitions)
	if req.Partition != nil {
		if _, ok := td.Partitions[*req.Partition]; !ok {
			return Produced{}, badRequest("topic %q has no partition %d (it has %d)", topic, *req.Partition, n)
		}
		r.Partition = *req.Partition
	} else {
		r.Partition = int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(r, n))
	}
	if err := c.Client.ProduceSync(ctx, r).FirstErr(); err != nil {
		return Produced{}, err
	}
	return Produced{Topic: topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC()}, nil
}
