package api

// DescribeConfigs, versions 1–4.
//
// Resources:
//   - Topic (2): every topic-level property (retention.ms, segment.bytes,
//     max.message.bytes, …). The value is the topic's override if it has one
//     (source TOPIC_CONFIG), else the broker's value (STATIC_BROKER_CONFIG
//     when set explicitly, DEFAULT_CONFIG otherwise). Synonyms (v1+,
//     IncludeSynonyms) list the override, the broker property and the default
//     in that order, as Kafka does.
//   - Broker (4), named by this node's id or "": every broker property from
//     the config registry. Properties that can change without a restart
//     are not read-only; a value set through AlterConfigs or
//     IncrementalAlterConfigs shows as DYNAMIC_DEFAULT_BROKER_CONFIG.
//   - Group (32), any group id (configs exist before the group does): every
//     group-level config (share.*, errors.deadletterqueue.*, idem.share.*),
//     the group's own value (GROUP_CONFIG) or the broker's default for it.
//   - Anything else: INVALID_REQUEST.
// ConfigNames filters (null = all); unknown names are skipped, as Kafka does.
// v3+ adds ConfigType and Documentation (IncludeDocumentation).

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
)

func init() { register(32, 1, 4, handleDescribeConfigs) }

func handleDescribeConfigs(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	docs := req.GetVersion() >= 3 && req.IncludeDocumentation
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !allowedTopic(env, conn, security.OpDescribeConfigs, rr.ResourceName) {
				sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
				break
			}
			t, ok := env.Partitions.Topic(rr.ResourceName)
			if !ok {
				sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
				sr.ErrorMessage = errMessage(fmt.Errorf("unknown topic %q", rr.ResourceName))
				break
			}
			sr.Configs = describeTopicConfigs(env, t.Configs, rr.ConfigNames, req.IncludeSynonyms, docs)
		case kmsg.ConfigResourceTypeBroker:
			if !allowedCluster(env, conn, security.OpDescribeConfigs) {
				sr.ErrorCode = kerr.ClusterAuthorizationFailed.Code
				break
			}
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(env.NodeID)) {
				sr.ErrorCode = kerr.InvalidRequest.Code
				sr.ErrorMessage = errMessage(fmt.Errorf("this is broker %d, not %q", env.NodeID, rr.ResourceName))
				break
			}
			sr.Configs = describeBrokerConfigs(env, rr.ConfigNames, req.IncludeSynonyms, docs)
		case kmsg.ConfigResourceTypeGroupConfig:
			if rr.ResourceName == "" {
				sr.ErrorCode = kerr.InvalidGroupID.Code
				break
			}
			if !allowedGroup(env, conn, security.OpDescribeConfigs, rr.ResourceName) {
				sr.ErrorCode = kerr.GroupAuthorizationFailed.Code
				break
			}
			if env.Share == nil {
				sr.ErrorCode = kerr.CoordinatorNotAvailable.Code
				break
			}
			sr.Configs = describeGroupConfigs(env, env.Share.Configs(share.ResourceGroup, rr.ResourceName), rr.ConfigNames, req.IncludeSynonyms, docs)
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
			sr.ErrorMessage = errMessage(fmt.Errorf("resource type %v is not supported", rr.ResourceType))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}

func wanted(names []string) func(string) bool {
	if names == nil {
		return func(string) bool { return true }
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	return func(n string) bool { return set[n] }
}

func configType(t config.Type) kmsg.ConfigType {
	switch t {
	case config.Bool:
		return kmsg.ConfigTypeBoolean
	case config.Int:
		return kmsg.ConfigTypeInt
	case config.Short:
		return kmsg.ConfigTypeShort
	case config.Long:
		return kmsg.ConfigTypeLong
	case config.List:
		return kmsg.ConfigTypeList
	case config.Double:
		return kmsg.ConfigTypeDouble
	}
	return kmsg.ConfigTypeString
}

func strp(s string) *string { return &s }

// brokerValue returns the effective broker value and its source.
func brokerValue(env *Env, p *config.Property) (*string, kmsg.ConfigSource) {
	v, null := env.Config.Effective(p.Name)
	_, from := env.Config.ValueSource(p.Name)
	src := kmsg.ConfigSourceDefaultConfig
	switch from {
	case config.SourceStatic:
		src = kmsg.ConfigSourceStaticBrokerConfig
	case config.SourceDynamic:
		src = kmsg.ConfigSourceDynamicDefaultBrokerConfig
	}
	if null {
		return nil, src
	}
	return &v, src
}

func synonym(name string, v *string, src kmsg.ConfigSource) kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
	s.Name, s.Value, s.Source = name, v, src
	return s
}

// describeTopicConfigs describes a topic's properties given its overrides.
func describeTopicConfigs(env *Env, overrides map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	want := wanted(names)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, p := range config.TopicProperties() {
		if !want(p.Topic) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = p.Topic
		bv, bsrc := brokerValue(env, p)
		if v, ok := overrides[p.Topic]; ok {
			c.Value, c.Source = strp(v), kmsg.ConfigSourceDynamicTopicConfig
		} else {
			c.Value, c.Source = bv, bsrc
			c.IsDefault = bsrc == kmsg.ConfigSourceDefaultConfig
		}
		if synonyms {
			if v, ok := overrides[p.Topic]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Topic, strp(v), kmsg.ConfigSourceDynamicTopicConfig))
			}
			if bsrc != kmsg.ConfigSourceDefaultConfig && !p.TopicOnly {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, bv, bsrc))
			}
			if !p.Null {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, strp(p.Default), kmsg.ConfigSourceDefaultConfig))
			}
		}
		c.ConfigType = configType(p.Type)
		if docs {
			c.Documentation = strp(p.Doc)
		}
		out = append(out, c)
	}
	return out
}

func describeBrokerConfigs(env *Env, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	want := wanted(names)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, p := range config.Properties() {
		if !want(p.Name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = p.Name
		c.Value, c.Source = brokerValue(env, p)
		c.IsDefault = c.Source == kmsg.ConfigSourceDefaultConfig
		c.ReadOnly = !p.Dynamic
		if synonyms {
			c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, c.Value, c.Source))
			if c.Source != kmsg.ConfigSourceDefaultConfig && !p.Null {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, strp(p.Default), kmsg.ConfigSourceDefaultConfig))
			}
		}
		c.ConfigType = configType(p.Type)
		if docs {
			c.Documentation = strp(p.Doc)
		}
		out = append(out, c)
	}
	return out
}

// describeGroupConfigs describes a group's configs given its own values.
func describeGroupConfigs(env *Env, own map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	want := wanted(names)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, p := range config.GroupProperties() {
		if !want(p.Name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = p.Name
		def := env.Config.GroupDefault(p)
		if v, ok := own[p.Name]; ok {
			c.Value, c.Source = strp(v), kmsg.ConfigSourceGroupConfig
		} else {
			c.Value, c.Source, c.IsDefault = strp(def), kmsg.ConfigSourceDefaultConfig, true
		}
		if synonyms {
			if v, ok := own[p.Name]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, strp(v), kmsg.ConfigSourceGroupConfig))
			}
			if p.Broker != "" {
				bp, _ := config.Lookup(p.Broker)
				bv, bsrc := brokerValue(env, bp)
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Broker, bv, bsrc))
			} else {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(p.Name, strp(p.Default), kmsg.ConfigSourceDefaultConfig))
			}
		}
		c.ConfigType = configType(p.Type)
		if docs {
			c.Documentation = strp(p.Doc)
		}
		out = append(out, c)
	}
	return out
}
