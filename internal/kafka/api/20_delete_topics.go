package api

// DeleteTopics, versions 1–6.
//
// v0–5 name topics (TopicNames); v6 takes name-or-id pairs. Deleting removes
// the topic from the catalog durably, closes its partitions and removes their
// data; the topic's id is never reused, so a topic created again under the
// same name is a new topic to clients that track ids.
//
// Errors: unknown name UNKNOWN_TOPIC_OR_PARTITION, unknown id
// UNKNOWN_TOPIC_ID, neither given INVALID_REQUEST, an internal topic
// (__consumer_offsets, __transaction_state) INVALID_TOPIC_EXCEPTION.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/security"
)

func init() { register(20, 1, 6, handleDeleteTopics) }

func handleDeleteTopics(ctx context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.GetVersion() < 6 {
		for _, n := range req.TopicNames {
			targets = append(targets, target{name: &n})
		}
	} else {
		for _, t := range req.Topics {
			targets = append(targets, target{name: t.Topic, id: t.TopicID})
		}
	}
	var deleted []string
	for _, t := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = t.name, t.id
		name := ""
		switch {
		case t.name != nil && *t.name != "":
			name = *t.name
		case t.id != [16]byte{}:
			if n, ok := internalTopicByID(env, t.id); ok {
				name = n
				st.Topic = kmsg.StringPtr(n)
				break
			}
			tp, ok := env.Partitions.Catalog().ByID(catalog.ID(t.id))
			if !ok {
				st.ErrorCode = kerr.UnknownTopicID.Code
			}
			name = tp.Name
			st.Topic = &tp.Name
		default:
			st.ErrorCode = kerr.InvalidRequest.Code
		}
		if st.ErrorCode == 0 && !allowedTopic(env, conn, security.OpDelete, name) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
		}
		if st.ErrorCode == 0 && isInternalTopic(env, name) {
			err := internalTopicError(name)
			st.ErrorCode, st.ErrorMessage = errorCode(err, dataAPIs), errMessage(err)
		}
		if st.ErrorCode == 0 {
			tp, err := env.Partitions.DeleteTopic(name)
			if err != nil {
				st.ErrorCode = errorCode(err, dataAPIs)
				st.ErrorMessage = errMessage(err)
			} else {
				st.TopicID = tp.ID
				deleted = append(deleted, name)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	// Kafka drops a deleted topic's committed offsets; a topic created again
	// under the name must not inherit them.
	if len(deleted) > 0 && env.Groups != nil {
		if err := env.Groups.DeleteTopicOffsets(ctx, deleted); err != nil {
			env.Logger.Warn("could not delete committed offsets of deleted topics", "topics", deleted, "err", err)
		}
	}
	return resp, nil
}
