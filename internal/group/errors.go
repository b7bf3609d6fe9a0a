package group

import "errors"

// Sentinel errors returned by the Coordinator. They are Go errors, not Kafka
// error codes: internal/kafka/api maps each to its code (the comment names it),
// and the rest of idem can match them with errors.Is.
var (
	// ErrClosed: the coordinator is shutting down (COORDINATOR_NOT_AVAILABLE,
	// which makes clients look the coordinator up again and retry).
	ErrClosed = errors.New("group: coordinator closed")
	// ErrInvalidGroupID: an empty group id (INVALID_GROUP_ID).
	ErrInvalidGroupID = errors.New("group: invalid group id")
	// ErrInvalidSessionTimeout: the session timeout is outside
	// [MinSessionTimeout, MaxSessionTimeout] (INVALID_SESSION_TIMEOUT).
	ErrInvalidSessionTimeout = errors.New("group: session timeout out of range")
	// ErrInconsistentProtocol: the protocol type differs from the group's, no
	// protocol is shared with every member, or a SyncGroup names another
	// protocol (INCONSISTENT_GROUP_PROTOCOL).
	ErrInconsistentProtocol = errors.New("group: inconsistent group protocol")
	// ErrMemberIDRequired: a JoinGroup v4+ without a member id; the result
	// carries the id to rejoin with (MEMBER_ID_REQUIRED, KIP-394).
	ErrMemberIDRequired = errors.New("group: member id required")
	// ErrUnknownMember: the member id is not in the group (UNKNOWN_MEMBER_ID).
	ErrUnknownMember = errors.New("group: unknown member id")
	// ErrIllegalGeneration: the request names another generation (ILLEGAL_GENERATION).
	ErrIllegalGeneration = errors.New("group: illegal generation")
	// ErrRebalanceInProgress: the member must rejoin (REBALANCE_IN_PROGRESS).
	ErrRebalanceInProgress = errors.New("group: rebalance in progress")
	// ErrFencedInstanceID: a newer member took over this group.instance.id
	// (FENCED_INSTANCE_ID, KIP-345).
	ErrFencedInstanceID = errors.New("group: static member fenced by a newer instance")
	// ErrGroupNotFound: DeleteGroups or OffsetDelete on an unknown group (GROUP_ID_NOT_FOUND).
	ErrGroupNotFound = errors.New("group: group not found")
	// ErrNonEmptyGroup: the group still has members (NON_EMPTY_GROUP).
	ErrNonEmptyGroup = errors.New("group: group has members")
	// ErrSubscribedToTopic: OffsetDelete on a topic the live group consumes
	// (GROUP_SUBSCRIBED_TO_TOPIC).
	ErrSubscribedToTopic = errors.New("group: group is subscribed to the topic")
	// ErrOffsetMetadataTooLarge: commit metadata longer than
	// Config.MaxMetadataBytes (OFFSET_METADATA_TOO_LARGE).
	ErrOffsetMetadataTooLarge = errors.New("group: offset metadata too large")
	// ErrFencedMemberEpoch: a consumer-protocol member's epoch is not the
	// one the coordinator gave it (nor its previous one, with a subset of
	// its partitions); it must give up its partitions and rejoin
	// (FENCED_MEMBER_EPOCH, KIP-848).
	ErrFencedMemberEpoch = errors.New("group: member epoch fenced")
	// ErrStaleMemberEpoch: an OffsetCommit or OffsetFetch names a member
	// epoch other than the member's current one (STALE_MEMBER_EPOCH; the
	// client retries after its next heartbeat). TxnOffsetCommit answers it
	// as ILLEGAL_GENERATION, the only code its versions know.
	ErrStaleMemberEpoch = errors.New("group: stale member epoch")
	// ErrUnreleasedInstanceID: a static member joins with a
	// group.instance.id that another member still holds, which has not
	// left with epoch -2 (UNRELEASED_INSTANCE_ID).
	ErrUnreleasedInstanceID = errors.New("group: instance id still held by another member")
	// ErrUnsupportedAssignor: a ConsumerGroupHeartbeat names a server
	// assignor this coordinator does not have (UNSUPPORTED_ASSIGNOR).
	ErrUnsupportedAssignor = errors.New("group: unsupported server assignor")
	// ErrInvalidRegularExpression: a subscription regex does not compile
	// (INVALID_REGULAR_EXPRESSION).
	ErrInvalidRegularExpression = errors.New("group: invalid subscription regular expression")
	// ErrGroupMaxSize: the consumer group has group.consumer.max.size
	// members already (GROUP_MAX_SIZE_REACHED).
	ErrGroupMaxSize = errors.New("group: group is full")
	// ErrInvalidRequest: a ConsumerGroupHeartbeat that breaks the
	// protocol's rules, such as a join that reports owned partitions
	// (INVALID_REQUEST).
	ErrInvalidRequest = errors.New("group: invalid request")
	// ErrUnsupportedVersion: a member of a consumer-protocol group commits
	// with an OffsetCommit older than v9, which cannot carry its member
	// epoch (UNSUPPORTED_VERSION).
	ErrUnsupportedVersion = errors.New("group: request version does not carry member epochs")
	// ErrStorage: the offsets log failed (for example a failed fsync poisoned
	// it); nothing can be acknowledged any more. It wraps the logstore error;
	// the API layer answers NOT_COORDINATOR for a storage cause and
	// COORDINATOR_NOT_AVAILABLE otherwise (both retriable, so clients keep
	// their offsets and retry), as Kafka does.
	ErrStorage = errors.New("group: offsets log failed")
)
