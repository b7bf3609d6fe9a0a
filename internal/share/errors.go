package share

import "errors"

// Sentinel errors returned by the Coordinator. They are Go errors, not Kafka
// error codes: internal/kafka/api maps each to its code (named in the
// comment). Errors may wrap them with a message for the client.
var (
	// ErrClosed: the coordinator is shutting down (COORDINATOR_NOT_AVAILABLE).
	ErrClosed = errors.New("share: coordinator closed")
	// ErrStorage: the share log failed (a failed fsync poisoned it); nothing
	// more can be acknowledged (COORDINATOR_NOT_AVAILABLE). It wraps the
	// logstore error.
	ErrStorage = errors.New("share: share log failed")
	// ErrInvalidRequest: a malformed request: a join without topics, an
	// acknowledgement batch that is not ascending, overlaps, goes past the
	// in-flight window or has the wrong number of types, acks in a request
	// that opens a session (INVALID_REQUEST).
	ErrInvalidRequest = errors.New("share: invalid request")
	// ErrInvalidGroupID: an empty group id (INVALID_GROUP_ID).
	ErrInvalidGroupID = errors.New("share: invalid group id")
	// ErrGroupNotFound: no such share group (GROUP_ID_NOT_FOUND).
	ErrGroupNotFound = errors.New("share: group not found")
	// ErrNonEmptyGroup: the group still has members (NON_EMPTY_GROUP).
	ErrNonEmptyGroup = errors.New("share: group has members")
	// ErrGroupMaxSize: group.share.max.size members already (GROUP_MAX_SIZE_REACHED).
	ErrGroupMaxSize = errors.New("share: group is full")
	// ErrUnknownMember: the member is not in the group (UNKNOWN_MEMBER_ID).
	ErrUnknownMember = errors.New("share: unknown member id")
	// ErrFencedMemberEpoch: the member epoch is neither the member's current
	// nor its previous one (FENCED_MEMBER_EPOCH).
	ErrFencedMemberEpoch = errors.New("share: fenced member epoch")
	// ErrSessionNotFound: a share-session epoch > 0 without a session
	// (SHARE_SESSION_NOT_FOUND).
	ErrSessionNotFound = errors.New("share: share session not found")
	// ErrInvalidSessionEpoch: the session epoch is not the session's
	// (INVALID_SHARE_SESSION_EPOCH).
	ErrInvalidSessionEpoch = errors.New("share: invalid share session epoch")
	// ErrSessionLimit: group.share.max.share.sessions sessions are open
	// (SHARE_SESSION_LIMIT_REACHED).
	ErrSessionLimit = errors.New("share: share session limit reached")
	// ErrInvalidRecordState: an acknowledgement for a record this member
	// does not hold (INVALID_RECORD_STATE).
	ErrInvalidRecordState = errors.New("share: record not acquired by this member")
	// ErrUnknownTopic: the topic (id) does not exist (UNKNOWN_TOPIC_ID or
	// UNKNOWN_TOPIC_OR_PARTITION).
	ErrUnknownTopic = errors.New("share: unknown topic or partition")
	// ErrInvalidConfig: a group config name or value that is not accepted
	// (INVALID_CONFIG).
	ErrInvalidConfig = errors.New("share: invalid config")
	// ErrInvalidOffset: AlterShareGroupOffsets to an offset outside the
	// log (INVALID_REQUEST? Kafka: OFFSET_OUT_OF_RANGE is not used; the
	// start offset is clamped); reserved.
	ErrInvalidOffset = errors.New("share: invalid offset")
)
