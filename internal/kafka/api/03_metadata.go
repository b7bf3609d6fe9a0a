package api

// Metadata, versions 0–12.
//
// v13 is not advertised (it only adds a top-level error code, but kgo sends
// Fetch v13+ once it sees Metadata v13 and topic ids, and id-based fetches are
// not served yet).
//
// Behaviour:
//   - Topics: v0 empty list = all topics; v1+ null = all, empty = none.
//     v10+ may name a topic by id with a null name; an unknown id gives
//     UNKNOWN_TOPIC_ID.
//   - Auto-creation: for names that do not exist, when
//     auto.create.topics.enable is true and the request allows it (always
//     below v4, AllowAutoTopicCreation from v4), the topic is created
//     synchronously with num.partitions partitions and returned complete
//     (kfake does the same; Kafka would say LEADER_NOT_AVAILABLE first).
//     An invalid name gives INVALID_TOPIC_EXCEPTION; otherwise
//     UNKNOWN_TOPIC_OR_PARTITION. Names Kafka reserves are never
//     auto-created.
//   - Internal topics (__consumer_offsets, __transaction_state) are listed
//     with IsInternal true, one partition each (internal_topics.go).
//   - This node is the only broker, the controller, and the leader of every
//     partition with leader epoch 0; topic ids are stable and non-zero.
//   - Authorization: listing all topics leaves out those the principal may
//     not DESCRIBE, silently; a named topic (or id) it may not DESCRIBE
//     answers TOPIC_AUTHORIZATION_FAILED whether it exists or not, so no
//     name leaks. Auto-creation also needs CREATE on the cluster or on the
//     topic; without it the topic answers UNKNOWN_TOPIC_OR_PARTITION.
//     AuthorizedOperations (cluster v8–10, topics v8+) are filled when
//     asked.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(3, 0, 12, handleMetadata) }

func handleMetadata(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	version := req.GetVersion()

	b := kmsg.NewMetadataResponseBroker()
	b.NodeID = env.NodeID
	b.Host, b.Port = conn.Advertised(env)
	resp.Brokers = append(resp.Brokers, b)
	clusterID := env.ClusterID
	resp.ClusterID = &clusterID
	resp.ControllerID = env.NodeID

	if version >= 8 && version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = authorizedOps(env, conn, security.ResourceCluster, security.ClusterName, clusterOps)
	}
	// withOps fills a topic's AuthorizedOperations when asked (v8+).
	withOps := func(st kmsg.MetadataResponseTopic) kmsg.MetadataResponseTopic {
		if req.IncludeTopicAuthorizedOperations && st.Topic != nil && st.ErrorCode == 0 {
			st.AuthorizedOperations = authorizedOps(env, conn, security.ResourceTopic, *st.Topic, topicOps)
		}
		return st
	}
	all := req.Topics == nil || (version == 0 && len(req.Topics) == 0)
	if all {
		// Topics the principal may not describe are left out silently:
		// their names are not told.
		for _, t := range env.Partitions.Topics() {
			if isInternalTopic(env, t.Name) || !allowedTopic(env, conn, security.OpDescribe, t.Name) {
				continue // a plain topic of that name, shadowed (internal_topics.go)
			}
			resp.Topics = append(resp.Topics, withOps(metadataTopic(env, t)))
		}
		for _, name := range internalTopicNames {
			if isInternalTopic(env, name) && allowedTopic(env, conn, security.OpDescribe, name) {
				resp.Topics = append(resp.Topics, withOps(metadataInternalTopic(env, name)))
			}
		}
		return resp, nil
	}
	// A topic the principal may not describe answers
	// TOPIC_AUTHORIZATION_FAILED whether it exists or not.
	denied := func(name string, id [16]byte) kmsg.MetadataResponseTopic {
		st := kmsg.NewMetadataResponseTopic()
		if name != "" {
			st.Topic = &name
		}
		st.TopicID = id
		st.ErrorCode = kerr.TopicAuthorizationFailed.Code
		return st
	}
	autoCreate := env.Config.Bool("auto.create.topics.enable") && (version < 4 || req.AllowAutoTopicCreation)
	// Creation is bounded per request and paced broker-wide, so that one
	// request naming thousands of unknown topics (or a client looping over
	// random names) cannot fill the catalog and the disk; topics over the
	// bound answer UNKNOWN_TOPIC_OR_PARTITION and clients ask again.
	createBudget := int(env.Config.Int("idem.auto.create.topics.max.per.request"))
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			if name, ok := internalTopicByID(env, rt.TopicID); ok {
				if !allowedTopic(env, conn, security.OpDescribe, name) {
					resp.Topics = append(resp.Topics, denied("", rt.TopicID))
					continue
				}
				resp.Topics = append(resp.Topics, withOps(metadataInternalTopic(env, name)))
				continue
			}
			t, ok := env.Partitions.Catalog().ByID(catalog.ID(rt.TopicID))
			if ok && !allowedTopic(env, conn, security.OpDescribe, t.Name) {
				resp.Topics = append(resp.Topics, denied("", rt.TopicID))
				continue
			}
			if !ok {
				st := kmsg.NewMetadataResponseTopic()
				st.TopicID = rt.TopicID
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
			resp.Topics = append(resp.Topics, withOps(metadataTopic(env, t)))
			continue
		}
		name := *rt.Topic
		if !allowedTopic(env, conn, security.OpDescribe, name) {
			resp.Topics = append(resp.Topics, denied(name, [16]byte{}))
			continue
		}
		if isInternalTopic(env, name) {
			resp.Topics = append(resp.Topics, withOps(metadataInternalTopic(env, name)))
			continue
		}
		t, ok := env.Partitions.Topic(name)
		mayCreate := !ok && (allowedCluster(env, conn, security.OpCreate) || allowedTopic(env, conn, security.OpCreate, name))
		if !ok && autoCreate && mayCreate && !isReservedTopic(name) && catalog.ValidateName(name) == nil && createBudget > 0 && (env.AutoCreate == nil || env.AutoCreate.Allow()) {
			createBudget--
			var err error
			t, err = env.Partitions.CreateTopic(name, int32(env.Config.Int("num.partitions")), nil)
			if errors.Is(err, catalog.ErrTopicExists) {
				var found bool
				if t, found = env.Partitions.Topic(name); found { // created concurrently
					err = nil
				}
			}
			if err != nil {
				st := kmsg.NewMetadataResponseTopic()
				st.Topic = &name
				st.ErrorCode = errorCode(err, dataAPIs)
				resp.Topics = append(resp.Topics, st)
				continue
			}
			ok = true
		}
		if !ok {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = &name
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if catalog.ValidateName(name) != nil {
				st.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, st)
			continue
		}
		resp.Topics = append(resp.Topics, withOps(metadataTopic(env, t)))
	}
	return resp, nil
}

func metadataTopic(env *Env, t catalog.Topic) kmsg.MetadataResponseTopic {
	st := kmsg.NewMetadataResponseTopic()
	name := t.Name
	st.Topic = &name
	st.TopicID = t.ID
	for i := int32(0); i < t.Partitions; i++ {
		sp := kmsg.NewMetadataResponseTopicPartition()
		sp.Partition = i
		sp.Leader = env.NodeID
		sp.LeaderEpoch = 0
		sp.Replicas = []int32{env.NodeID}
		sp.ISR = []int32{env.NodeID}
		sp.OfflineReplicas = []int32{}
		if env.Partitions.IsOffline(t.Name, i) {
			// The replica is offline, but it stays the leader so that
			// produce and fetch reach it and are answered with
			// KAFKA_STORAGE_ERROR, which tells the user what is wrong
			// (LEADER_NOT_AVAILABLE would speak of an election).
			sp.ISR = []int32{}
			sp.OfflineReplicas = []int32{env.NodeID}
		}
		st.Partitions = append(st.Partitions, sp)
	}
	return st
}
