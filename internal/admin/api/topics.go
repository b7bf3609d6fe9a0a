package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicSummary is one row of GET /v1/topics.
type TopicSummary struct {
	Name       string `json:"name"`
	Internal   bool   `json:"internal"`
	Partitions int    `json:"partitions"`
	// Records is the sum over partitions of high watermark minus log start
	// offset: records kept, counting transaction markers and, on compacted
	// topics, offsets compaction emptied.
	Records   int64 `json:"records"`
	SizeBytes int64 `json:"size_bytes"`
}

// PartitionInfo is one partition of a topic.
type PartitionInfo struct {
	Partition        int32  `json:"partition"`
	LogStartOffset   int64  `json:"log_start_offset"`
	HighWatermark    int64  `json:"high_watermark"`
	LastStableOffset int64  `json:"last_stable_offset"`
	SizeBytes        int64  `json:"size_bytes"`
	Error            string `json:"error,omitempty"`
}

// ConfigEntry is one topic config.
type ConfigEntry struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive"`
}

// TopicDetail is what GET /v1/topics/{name} answers.
type TopicDetail struct {
	Name       string          `json:"name"`
	ID         string          `json:"id"`
	Internal   bool            `json:"internal"`
	Partitions []PartitionInfo `json:"partitions"`
	Configs    []ConfigEntry   `json:"configs"`
}

// Topics lists the topics the user may describe, internal ones included.
func (s *Service) Topics(ctx context.Context, c *Conn) ([]TopicSummary, error) {
	pg, err := s.TopicsPage(ctx, c, ListOptions{})
	return pg.Items, err
}

// TopicsPage lists one page of the topics the user may describe: the
// names are filtered and cut first, so offsets and sizes are asked for
// the page's topics only.
func (s *Service) TopicsPage(ctx context.Context, c *Conn, opts ListOptions) (ListPage[TopicSummary], error) {
	tds, err := c.Admin.ListTopicsWithInternal(ctx)
	if err != nil {
		return ListPage[TopicSummary]{}, err
	}
	names, matching := opts.page(tds.Names())
	out := ListPage[TopicSummary]{Items: make([]TopicSummary, 0, len(names)), Matching: matching}
	if len(names) == 0 {
		return out, nil
	}
	offs, err := s.offsets(ctx, c, names...)
	if err != nil {
		return ListPage[TopicSummary]{}, err
	}
	sizes := s.sizes(ctx, c, names)
	for _, name := range names {
		td := tds[name]
		t := TopicSummary{Name: td.Topic, Internal: td.IsInternal, Partitions: len(td.Partitions)}
		for p := range td.Partitions {
			o := offs[tp{td.Topic, p}]
			if o.HighWatermark > o.LogStartOffset {
				t.Records += o.HighWatermark - o.LogStartOffset
			}
			t.SizeBytes += sizes[tp{td.Topic, p}]
		}
		out.Items = append(out.Items, t)
	}
	return out, nil
}

type tp struct {
	topic     string
	partition int32
}

// offsets lists start, high watermark and last stable offsets.
func (s *Service) offsets(ctx context.Context, c *Conn, topics ...string) (map[tp]PartitionInfo, error) {
	starts, err := c.Admin.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	ends, err := c.Admin.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	stables, err := c.Admin.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[tp]PartitionInfo{}
	set := func(o kadm.ListedOffset, f func(*PartitionInfo)) {
		k := tp{o.Topic, o.Partition}
		pi := out[k]
		pi.Partition = o.Partition
		if o.Err != nil {
			pi.Error = o.Err.Error()
		} else {
			f(&pi)
		}
		out[k] = pi
	}
	starts.Each(func(o kadm.ListedOffset) { set(o, func(p *PartitionInfo) { p.LogStartOffset = o.Offset }) })
	ends.Each(func(o kadm.ListedOffset) { set(o, func(p *PartitionInfo) { p.HighWatermark = o.Offset }) })
	stables.Each(func(o kadm.ListedOffset) { set(o, func(p *PartitionInfo) { p.LastStableOffset = o.Offset }) })
	return out, nil
}

// sizes reads partition sizes from DescribeLogDirs; sizes the user may not
// see (or a failed request) are left out, and show as 0.
func (s *Service) sizes(ctx context.Context, c *Conn, topics []string) map[tp]int64 {
	set := kadm.TopicsSet{}
	for _, t := range topics {
		set[t] = nil
	}
	dirs, err := c.Admin.DescribeAllLogDirs(ctx, set)
	out := map[tp]int64{}
	if err != nil {
		s.cfg.Logger.Debug("admin api: describe log dirs", "err", err)
		return out
	}
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) { out[tp{p.Topic, p.Partition}] += p.Size })
	})
	return out
}

// topicDetail is the metadata of one topic, 404 when unknown.
func topicMetadata(ctx context.Context, c *Conn, name string) (kadm.TopicDetail, error) {
	tds, err := c.Admin.ListTopicsWithInternal(ctx, name)
	if err != nil {
		return kadm.TopicDetail{}, err
	}
	td, ok := tds[name]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return kadm.TopicDetail{}, notFound("topic %q does not exist", name)
	}
	if td.Err != nil {
		return kadm.TopicDetail{}, td.Err
	}
	return td, nil
}

// Topic describes one topic: its partitions' offsets and sizes, its configs.
func (s *Service) Topic(ctx context.Context, c *Conn, name string) (TopicDetail, error) {
	td, err := topicMetadata(ctx, c, name)
	if err != nil {
		return TopicDetail{}, err
	}
	offs, err := s.offsets(ctx, c, name)
	if err != nil {
		return TopicDetail{}, err
	}
	sizes := s.sizes(ctx, c, []string{name})
	out := TopicDetail{Name: name, ID: td.ID.String(), Internal: td.IsInternal, Partitions: []PartitionInfo{}, Configs: []ConfigEntry{}}
	for _, p := range td.Partitions.Numbers() {
		pi := offs[tp{name, p}]
		pi.Partition = p
		pi.SizeBytes = sizes[tp{name, p}]
		out.Partitions = append(out.Partitions, pi)
	}
	cfgs, err := s.topicConfigs(ctx, c, name)
	if err != nil {
		return TopicDetail{}, err
	}
	out.Configs = cfgs
	return out, nil
}

func (s *Service) topicConfigs(ctx context.Context, c *Conn, name string) ([]ConfigEntry, error) {
	rcs, err := c.Admin.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return nil, err
	}
	rc, err := rcs.On(name, nil)
	if err != nil {
		return nil, err
	}
	if rc.Err != nil {
		return nil, rc.Err
	}
	out := []ConfigEntry{}
	for _, cf := range rc.Configs {
		out = append(out, ConfigEntry{Name: cf.Key, Value: cf.Value, Source: configSource(cf.Source.String()), Sensitive: cf.Sensitive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// configSource turns kmsg's DYNAMIC_TOPIC_CONFIG into dynamic_topic_config.
func configSource(s string) string { return strings.ToLower(s) }

// CreateTopicRequest is the body of POST /v1/topics.
type CreateTopicRequest struct {
	Name string `json:"name"`
	// Partitions: 0 or absent takes the broker's num.partitions.
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs"`
}

// CreateTopic creates a topic (replication factor 1: one broker).
func (s *Service) CreateTopic(ctx context.Context, c *Conn, req CreateTopicRequest) (TopicDetail, error) {
	if req.Name == "" {
		return TopicDetail{}, badRequest("name is required")
	}
	if req.Partitions < 0 {
		return TopicDetail{}, badRequest("partitions must be positive, or 0 for the broker's default")
	}
	if req.Partitions == 0 {
		req.Partitions = -1
	}
	cfgs := map[string]*string{}
	for k, v := range req.Configs {
		cfgs[k] = &v
	}
	resp, err := c.Admin.CreateTopic(ctx, req.Partitions, -1, cfgs, req.Name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		if resp.ErrMessage != "" {
			return TopicDetail{}, fmt.Errorf("%w: %s", err, resp.ErrMessage)
		}
		return TopicDetail{}, err
	}
	return s.Topic(ctx, c, req.Name)
}

// DeleteTopic deletes a topic.
func (s *Service) DeleteTopic(ctx context.Context, c *Conn, name string) error {
	resp, err := c.Admin.DeleteTopic(ctx, name)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return notFound("topic %q does not exist", name)
	}
	return err
}

// AlterConfigsRequest is the body of PATCH /v1/topics/{name}/configs: the
// configs to set and those to remove (back to the broker's default).
type AlterConfigsRequest struct {
	Set    map[string]string `json:"set"`
	Delete []string          `json:"delete"`
}

// AlterTopicConfigs changes some configs (IncrementalAlterConfigs) and
// answers all of them afterwards.
func (s *Service) AlterTopicConfigs(ctx context.Context, c *Conn, name string, req AlterConfigsRequest) ([]ConfigEntry, error) {
	if len(req.Set) == 0 && len(req.Delete) == 0 {
		return nil, badRequest("nothing to change: give set and/or delete")
	}
	if _, err := topicMetadata(ctx, c, name); err != nil {
		return nil, err
	}
	var alters []kadm.AlterConfig
	keys := make([]string, 0, len(req.Set))
	for k := range req.Set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := req.Set[k]
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	for _, k := range req.Delete {
		if _, both := req.Set[k]; both {
			return nil, badRequest("config %q is both set and deleted", k)
		}
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	resps, err := c.Admin.AlterTopicConfigs(ctx, alters, name)
	if err != nil {
		return nil, err
	}
	for _, r := range resps {
		if r.Err != nil {
			if r.ErrMessage != "" {
				return nil, fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
			return nil, r.Err
		}
	}
	return s.topicConfigs(ctx, c, name)
}

// CreateTopicField names the CreateTopicRequest field a CreateTopic
// refusal is about ("name", "partitions" or "configs"), or "" when it is
// about none (authorization, the broker unreachable): forms put the message
// beside that field. The Kafka error codes stay in this package.
func CreateTopicField(err error) string {
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists), errors.Is(err, kerr.InvalidTopicException):
		return "name"
	case errors.Is(err, kerr.InvalidPartitions):
		return "partitions"
	case errors.Is(err, kerr.InvalidConfig), errors.Is(err, kerr.PolicyViolation):
		return "configs"
	}
	return ""
}
