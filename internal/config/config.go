// Package config is the one registry of idem's broker and topic properties, named
// as Kafka names them (log.retention.ms, num.partitions, …) so that users can copy
// settings from Kafka's documentation and tools can read them back through
// DescribeConfigs. The registry drives validation, defaults, DescribeConfigs and
// generated help; nothing else in the broker keeps its own list of settings.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Type is the value type of a property (the same set Kafka's ConfigDef uses).
type Type int

// Property value types.
const (
	Bool Type = iota + 1
	String
	Int    // int32
	Short  // int16
	Long   // int64
	List   // comma-separated strings
	Double // float64
)

func (t Type) String() string {
	switch t {
	case Bool:
		return "boolean"
	case String:
		return "string"
	case Int:
		return "int"
	case Short:
		return "short"
	case Long:
		return "long"
	case List:
		return "list"
	case Double:
		return "double"
	}
	return "unknown"
}

// Property describes one setting.
type Property struct {
	Name string
	Type Type
	// Default is the value when nothing sets it; Null properties have no value
	// by default (Kafka shows them as null), e.g. log.retention.ms, whose
	// effective value then comes from log.retention.minutes or .hours.
	Default string
	Null    bool
	Doc     string
	// Topic is the topic-level name that overrides this broker property per
	// topic (retention.ms for log.retention.ms), or "" when there is none.
	Topic string
	// Min and Max bound numeric values (inclusive) unless both are 0.
	Min, Max int64
	// Enum, when set, lists the accepted values (case-sensitive, as Kafka's are).
	Enum []string
	// Dynamic properties are read where they are used, so altering them
	// (AlterConfigs, IncrementalAlterConfigs on the BROKER resource) takes
	// effect without a restart; the others are read once at start.
	Dynamic bool
	// TopicOnly marks a topic-level property with no broker property
	// (Kafka's errors.deadletterqueue.group.enable): it is looked up by its
	// topic name and is not a setting of the broker.
	TopicOnly bool
	// check is an extra validation (beyond type, range and enum).
	check func(string) error
}

// ErrUnknown is wrapped by errors for property names that are not in the registry.
var ErrUnknown = errors.New("unknown property")

// ErrInvalid is wrapped by errors for values that a property does not accept.
var ErrInvalid = errors.New("invalid value")

const (
	maxInt32 = math.MaxInt32
	day      = int64(24 * time.Hour / time.Millisecond)
)

// registry lists every broker property; keep it sorted by name within groups
// for readable help output (Properties() sorts anyway).
var registry = []*Property{
	// Node and listeners.
	{Name: "node.id", Type: Int, Default: "1", Min: 0, Max: maxInt32,
		Doc: "The id this broker advertises in Metadata and FindCoordinator."},
	{Name: "log.dirs", Type: String, Default: "./idem-data",
		Doc: "Directory that holds all data: topic partitions, consumer offsets, producer ids and the topic catalog. Only one directory is supported."},
	{Name: "listeners", Type: List, Default: "127.0.0.1:9092", check: checkListeners,
		Doc: "Comma-separated NAME://host:port listeners (e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093); a bare host:port is PLAINTEXT. Each name's security protocol comes from listener.security.protocol.map. A listener without authentication on a non-loopback address refuses to start unless idem.listeners.allow.unauthenticated=true."},
	{Name: "advertised.listeners", Type: List, Default: "", check: checkAdvertised,
		Doc: "Comma-separated NAME://host:port that clients of each listener are told to connect to (a bare host:port applies to the first listener); a listener without one advertises its bound address (with 0.0.0.0 replaced by 127.0.0.1)."},
	{Name: "listener.security.protocol.map", Type: List, Default: "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", check: checkProtocolMap,
		Doc: "Comma-separated NAME:PROTOCOL pairs giving each listener name its security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."},
	{Name: "idem.listeners.allow.unauthenticated", Type: Bool, Default: "false",
		Doc: "Let a listener without authentication (PLAINTEXT, or SSL without ssl.client.auth=required) bind a non-loopback address. Off by default so that a broker is never exposed by accident; turn it on only when the network itself keeps strangers out."},

	{Name: "idem.admin.security", Type: String, Default: "auto", Enum: []string{"auto", "none"},
		Doc: "auto: when security is configured (a listener other than PLAINTEXT, or an authorizer) the admin HTTP server speaks HTTPS with the listeners' certificate (if they have one) and asks for HTTP Basic authentication with the broker's users, who need DESCRIBE on the cluster under an authorizer; /healthz stays open. none: plain and open, whatever the listeners."},

	// TLS (SSL and SASL_SSL listeners), by Kafka's names; PEM only.
	{Name: "ssl.keystore.type", Type: String, Default: "PEM", Enum: []string{"PEM"},
		Doc: "Format of the keystore: only PEM (convert a JKS or PKCS12 store with keytool and openssl)."},
	{Name: "ssl.keystore.location", Type: String, Default: "",
		Doc: "PEM file holding the listener's private key and certificate chain; reread when it changes, so certificates rotate without a restart."},
	{Name: "ssl.keystore.certificate.chain", Type: String, Default: "",
		Doc: "The certificate chain in PEM, inline (instead of ssl.keystore.location)."},
	{Name: "ssl.keystore.key", Type: String, Default: "",
		Doc: "The private key in PEM, inline (instead of ssl.keystore.location); encrypted keys need ssl.key.password."},
	{Name: "ssl.key.password", Type: String, Default: "",
		Doc: "Password of an encrypted PKCS#8 private key in the keystore (PBES2 with PBKDF2 and AES-CBC, as openssl pkcs8 -topk8 -v2 aes-256-cbc writes)."},
	{Name: "ssl.truststore.type", Type: String, Default: "PEM", Enum: []string{"PEM"},
		Doc: "Format of the truststore: only PEM."},
	{Name: "ssl.truststore.location", Type: String, Default: "",
		Doc: "PEM file of the CA certificates that client certificates must chain to (mTLS); reread when it changes."},
	{Name: "ssl.truststore.certificates", Type: String, Default: "",
		Doc: "The truststore's CA certificates in PEM, inline."},
	{Name: "ssl.client.auth", Type: String, Default: "none", Enum: []string{"none", "requested", "required"},
		Doc: "Whether SSL listeners ask for a client certificate: none, requested (verified if given) or required (mTLS). The principal of a client certificate comes from its subject through ssl.principal.mapping.rules."},
	{Name: "ssl.enabled.protocols", Type: List, Default: "TLSv1.2,TLSv1.3", Enum: []string{"TLSv1.2", "TLSv1.3"},
		Doc: "TLS versions served; older ones are never offered."},
	{Name: "ssl.principal.mapping.rules", Type: String, Default: "DEFAULT",
		Doc: "How a client certificate's subject becomes a user name: RULE:pattern/replacement/[LU] rules and DEFAULT (the whole distinguished name), tried in order."},

	// SASL.
	{Name: "sasl.enabled.mechanisms", Type: List, Default: "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN", Enum: []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"},
		Doc: "SASL mechanisms SASL listeners offer. PLAIN logins are checked against the SCRAM credentials (idem user create); use PLAIN only over SASL_SSL. OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (or the development-only unsecured mode)."},
	{Name: "sasl.server.max.receive.size", Type: Int, Default: "524288", Min: 524288, Max: 524288,
		Doc: "Largest frame accepted before authentication (fixed)."},
	{Name: "connections.max.reauth.ms", Type: Long, Default: "0", Min: 0, Max: math.MaxInt64,
		Doc: "When positive, a SASL session lasts at most this long (or until its OAuth token expires, if sooner): clients are told the lifetime and must re-authenticate on the connection (KIP-368), else it is closed at their next request."},
	{Name: "sasl.oauthbearer.jwks.endpoint.url", Type: String, Default: "",
		Doc: "Where OAUTHBEARER's token signing keys are: a JWKS file path (file:///path or /path, reread when it changes) or an http(s) URL (refreshed in the background)."},
	{Name: "sasl.oauthbearer.expected.issuer", Type: String, Default: "",
		Doc: "If set, an OAuth token's iss claim must equal it."},
	{Name: "sasl.oauthbearer.expected.audience", Type: List, Default: "",
		Doc: "If set, an OAuth token's aud claim must contain one of these."},
	{Name: "sasl.oauthbearer.sub.claim.name", Type: String, Default: "sub",
		Doc: "The OAuth token claim that names the principal."},
	{Name: "sasl.oauthbearer.clock.skew.seconds", Type: Int, Default: "30", Min: 0, Max: 3600,
		Doc: "Clock difference tolerated on an OAuth token's exp, nbf and iat."},
	{Name: "idem.sasl.oauthbearer.unsecured.jwt.enable", Type: Bool, Default: "false",
		Doc: "Accept unsigned (alg none) OAuth tokens, as Kafka's default development validator does: anyone can then be anyone. For development only."},

	// Authorization and quotas.
	{Name: "authorizer.class.name", Type: String, Default: "", check: checkAuthorizer,
		Doc: "Empty: no authorizer (every authenticated client may do everything; the ACL APIs answer SECURITY_DISABLED). Set it to idem, or to Kafka's org.apache.kafka.metadata.authorizer.StandardAuthorizer or kafka.security.authorizer.AclAuthorizer, to check every request against the ACLs."},
	{Name: "super.users", Type: String, Default: "",
		Doc: "Semicolon-separated principals (User:admin;User:ops) that every ACL check lets through."},
	{Name: "allow.everyone.if.no.acl.found", Type: Bool, Default: "false",
		Doc: "Let everyone do anything on a resource that no ACL names. Off: a resource without ACLs is closed to all but super.users."},
	{Name: "quota.window.num", Type: Int, Default: "11", Min: 2, Max: 100,
		Doc: "Windows over which client quota rates are measured."},
	{Name: "quota.window.size.seconds", Type: Int, Default: "1", Min: 1, Max: 3600,
		Doc: "Length of one quota window."},
	{Name: "socket.request.max.bytes", Type: Int, Default: "104857600", Min: 1024, Max: maxInt32,
		Doc: "Largest request frame accepted; a larger size prefix closes the connection."},
	{Name: "fetch.max.bytes", Type: Int, Default: "57671680", Min: 1024, Max: maxInt32, Dynamic: true,
		Doc: "Most record bytes one Fetch response carries, whatever the client asks (at least one batch is always returned)."},
	{Name: "max.incremental.fetch.session.cache.slots", Type: Int, Default: "1000", Min: 0, Max: maxInt32,
		Doc: "Most incremental fetch sessions (KIP-227) the broker keeps, over all clients; 0 declines sessions (every fetch is a full fetch). A full fetch that finds the cache full creates none unless it may evict one (min.incremental.fetch.session.eviction.ms)."},
	{Name: "min.incremental.fetch.session.eviction.ms", Type: Int, Default: "120000", Min: 0, Max: maxInt32,
		Doc: "A fetch session unused for longer may be evicted to make room for a new one; one created longer ago may be evicted by a new session with more partitions (Kafka's rules)."},
	{Name: "connections.max.idle.ms", Type: Long, Default: "600000", Min: 1, Max: math.MaxInt64,
		Doc: "Connections idle for longer are closed."},
	{Name: "max.connections", Type: Int, Default: strconv.Itoa(maxInt32), Min: 0, Max: maxInt32,
		Doc: "Most client connections open at once; a connection beyond it is closed at accept. Whatever it says, connections may use at most half of the process's file descriptor limit, so that they can never starve the logs of files."},
	{Name: "max.connections.per.ip", Type: Int, Default: strconv.Itoa(maxInt32), Min: 0, Max: maxInt32,
		Doc: "Most connections open at once from one client IP address; a connection beyond it is closed at accept."},
	{Name: "queued.max.request.bytes", Type: Long, Default: "268435456", Min: -1, Max: math.MaxInt64,
		Doc: "Broker-wide memory budget for what connections buffer: request frames larger than 64 KiB take it from reading their size until they are handled (a connection that cannot get it waits instead of allocating), and Fetch answers take it for the records they read until they are written (when it is spent, fetches answer with fewer or no records and clients ask again). At least socket.request.max.bytes. -1 means unlimited (Kafka's default; idem bounds it by default)."},

	// Topics.
	{Name: "num.partitions", Type: Int, Default: "1", Min: 1, Max: 100000, Dynamic: true,
		Doc: "Partitions of automatically created topics and of CreateTopics requests that ask for the default (-1)."},
	{Name: "auto.create.topics.enable", Type: Bool, Default: "true", Dynamic: true,
		Doc: "Create a topic when a Metadata request names an unknown topic and allows auto-creation. Kafka's default, kept for the quick start; turn it off in production (as Kafka recommends) so that a typo or a hostile client cannot create topics."},
	{Name: "idem.auto.create.topics.max.per.request", Type: Int, Default: "20", Min: 0, Max: maxInt32, Dynamic: true,
		Doc: "Most topics one Metadata request may create; the rest of its unknown topics answer UNKNOWN_TOPIC_OR_PARTITION and clients ask again."},
	{Name: "idem.auto.create.topics.max.per.minute", Type: Int, Default: "600", Min: 0, Max: maxInt32,
		Doc: "Most topics Metadata requests may create per minute, broker-wide (a token bucket with one minute's burst)."},
	{Name: "default.replication.factor", Type: Short, Default: "1", Min: 1, Max: 1,
		Doc: "Replication factor of new topics. idem is a single node, so only 1 is accepted."},
	{Name: "min.insync.replicas", Type: Int, Default: "1", Min: 1, Max: 1, Topic: "min.insync.replicas",
		Doc: "Accepted for compatibility; a single node is always its only in-sync replica."},
	{Name: "offsets.topic.replication.factor", Type: Short, Default: "1", Min: 1, Max: 1,
		Doc: "Accepted for compatibility; committed offsets live on this node only."},
	{Name: "transaction.state.log.replication.factor", Type: Short, Default: "1", Min: 1, Max: 1,
		Doc: "Accepted for compatibility; transaction state lives on this node only."},
	{Name: "transaction.state.log.min.isr", Type: Int, Default: "1", Min: 1, Max: 1,
		Doc: "Accepted for compatibility."},

	// Log segments and retention.
	{Name: "log.segment.bytes", Type: Int, Default: "1073741824", Min: 1024, Max: maxInt32, Topic: "segment.bytes",
		Doc: "Size at which a partition's active segment is rolled."},
	{Name: "log.roll.ms", Type: Long, Null: true, Min: 1, Max: math.MaxInt64, Topic: "segment.ms",
		Doc: "Age at which a segment is rolled even if not full; when unset, log.roll.hours applies."},
	{Name: "log.roll.hours", Type: Int, Default: "168", Min: 1, Max: maxInt32,
		Doc: "Segment roll age in hours, used when log.roll.ms is unset."},
	{Name: "log.retention.ms", Type: Long, Null: true, Min: -1, Max: math.MaxInt64, Topic: "retention.ms",
		Doc: "How long to keep a segment after its newest record; -1 keeps data forever. The most specific of log.retention.ms, .minutes and .hours wins."},
	{Name: "log.retention.minutes", Type: Int, Null: true, Min: -1, Max: maxInt32,
		Doc: "Retention in minutes, used when log.retention.ms is unset."},
	{Name: "log.retention.hours", Type: Int, Default: "168", Min: -1, Max: maxInt32,
		Doc: "Retention in hours, used when log.retention.ms and log.retention.minutes are unset."},
	{Name: "log.retention.bytes", Type: Long, Default: "-1", Min: -1, Max: math.MaxInt64, Topic: "retention.bytes",
		Doc: "Largest size of a partition before old segments are deleted; -1 means unlimited."},
	{Name: "log.retention.check.interval.ms", Type: Long, Default: "300000", Min: 1, Max: math.MaxInt64,
		Doc: "How often retention runs and idempotent-producer state is snapshotted (bounding the log replay after a crash)."},
	{Name: "log.index.interval.bytes", Type: Int, Default: "4096", Min: 0, Max: maxInt32,
		Doc: "Bytes between entries of the sparse offset and time indexes."},
	{Name: "log.cleanup.policy", Type: List, Default: "delete", Enum: []string{"delete", "compact"}, Topic: "cleanup.policy",
		Doc: "delete removes whole old segments by retention.ms and retention.bytes; compact keeps the latest record of each key (log compaction, docs/compaction.md); compact,delete does both. A compact-only topic is never trimmed by time or size, and refuses records without a key."},
	{Name: "message.max.bytes", Type: Int, Default: "1048588", Min: 0, Max: maxInt32, Topic: "max.message.bytes", Dynamic: true,
		Doc: "Largest record batch accepted by Produce (after compression)."},
	{Name: "log.message.timestamp.type", Type: String, Default: "CreateTime", Enum: []string{"CreateTime", "LogAppendTime"}, Topic: "message.timestamp.type",
		Doc: "Whether a record's timestamp is the producer's (CreateTime) or the broker's append time (LogAppendTime)."},
	{Name: "compression.type", Type: String, Default: "producer", Enum: []string{"producer"}, Topic: "compression.type",
		Doc: "Batches are stored exactly as the producer compressed them; recompression is not implemented."},

	// Log compaction (docs/compaction.md).
	{Name: "log.cleaner.enable", Type: Bool, Default: "true",
		Doc: "Run the log cleaner, which compacts the partitions of topics with cleanup.policy=compact."},
	{Name: "log.cleaner.threads", Type: Int, Default: "1", Min: 1, Max: 1,
		Doc: "idem runs one cleaner goroutine, which cleans one partition at a time; only 1 is accepted."},
	{Name: "log.cleaner.backoff.ms", Type: Long, Default: "15000", Min: 0, Max: math.MaxInt64,
		Doc: "How long the cleaner sleeps when no partition needs cleaning."},
	{Name: "log.cleaner.dedupe.buffer.size", Type: Long, Default: "134217728", Min: 1024, Max: 1 << 40,
		Doc: "Most memory the cleaner's key map may take: 24 bytes per distinct key of the part of a log being cleaned. A round maps as many keys as fit and cleans up to there; the next round goes on."},
	{Name: "log.cleaner.io.buffer.size", Type: Int, Default: "524288", Min: 1024, Max: maxInt32,
		Doc: "Size of the cleaner's read and write buffers (each)."},
	{Name: "log.cleaner.io.buffer.load.factor", Type: Double, Default: "0.9", check: checkRatio(0.1, 1),
		Doc: "How full the cleaner's key map may get before a round stops mapping."},
	{Name: "log.cleaner.io.max.bytes.per.second", Type: Double, Default: "314572800", check: checkRatio(1, math.MaxFloat64),
		Doc: "Most bytes per second the cleaner reads and writes together (300 MiB/s: about 100 MB/s of log cleaned, while acks=all producers keep over 80% of their throughput on a 2-core machine; docs/compaction.md). Kafka's default is unlimited; 1.7976931348623157E308 means the same here."},
	{Name: "log.cleaner.min.cleanable.ratio", Type: Double, Default: "0.5", Topic: "min.cleanable.dirty.ratio", check: checkRatio(0, 1),
		Doc: "A partition is cleaned once the part not yet cleaned is more than this fraction of its cleanable log."},
	{Name: "log.cleaner.delete.retention.ms", Type: Long, Default: strconv.FormatInt(day, 10), Min: 0, Max: math.MaxInt64, Topic: "delete.retention.ms",
		Doc: "How long a tombstone (and the marker of a transaction whose records are gone) stays after the clean that first keeps it, so that consumers that are behind see the delete (KIP-534)."},
	{Name: "log.cleaner.min.compaction.lag.ms", Type: Long, Default: "0", Min: 0, Max: math.MaxInt64, Topic: "min.compaction.lag.ms",
		Doc: "Records stay uncompacted at least this long (by their segment's newest timestamp)."},
	{Name: "log.cleaner.max.compaction.lag.ms", Type: Long, Default: strconv.FormatInt(math.MaxInt64, 10), Min: 1, Max: math.MaxInt64, Topic: "max.compaction.lag.ms",
		Doc: "A partition whose oldest uncleaned record is older than this is cleaned whatever its dirty ratio, and its active segment is rolled at this age (KIP-354)."},

	// Consumer groups.
	{Name: "group.initial.rebalance.delay.ms", Type: Int, Default: "3000", Min: 0, Max: maxInt32,
		Doc: "How long a new, empty group waits for more members before its first rebalance."},
	{Name: "group.min.session.timeout.ms", Type: Int, Default: "6000", Min: 0, Max: maxInt32,
		Doc: "Smallest session timeout a member may ask for."},
	{Name: "group.max.session.timeout.ms", Type: Int, Default: "1800000", Min: 0, Max: maxInt32,
		Doc: "Largest session timeout a member may ask for."},
	{Name: "offsets.retention.minutes", Type: Int, Default: "10080", Min: 1, Max: maxInt32,
		Doc: "How long committed offsets of an empty group (or standalone commits) are kept."},
	{Name: "offsets.retention.check.interval.ms", Type: Long, Default: "600000", Min: 1, Max: math.MaxInt64,
		Doc: "How often expired committed offsets are removed."},
	{Name: "offset.metadata.max.bytes", Type: Int, Default: "4096", Min: 0, Max: maxInt32,
		Doc: "Largest metadata string accepted with a committed offset."},
	{Name: "group.coordinator.rebalance.protocols", Type: List, Default: "classic,consumer", Enum: []string{"classic", "consumer"},
		Doc: "Rebalance protocols the group coordinator serves: classic (JoinGroup/SyncGroup) and consumer (KIP-848, ConsumerGroupHeartbeat). Without consumer, ConsumerGroupHeartbeat answers UNSUPPORTED_VERSION and clients fall back to classic."},
	{Name: "group.consumer.session.timeout.ms", Type: Int, Default: "45000", Min: 1, Max: maxInt32,
		Doc: "Session timeout of consumer-protocol (KIP-848) group members: one that stops heartbeating for this long is removed."},
	{Name: "group.consumer.heartbeat.interval.ms", Type: Int, Default: "5000", Min: 1, Max: maxInt32,
		Doc: "How often consumer-protocol (KIP-848) members are told to heartbeat."},
	{Name: "group.consumer.max.size", Type: Int, Default: strconv.Itoa(maxInt32), Min: 1, Max: maxInt32,
		Doc: "Most members of one consumer-protocol (KIP-848) group; a join beyond it gets GROUP_MAX_SIZE_REACHED."},
	{Name: "group.consumer.assignors", Type: List, Default: "uniform,range",
		Enum: []string{"uniform", "range", "org.apache.kafka.coordinator.group.assignor.UniformAssignor", "org.apache.kafka.coordinator.group.assignor.RangeAssignor"},
		Doc:  "Server assignors consumer-protocol (KIP-848) members may ask for; the first is the default. Both are sticky."},

	// Producers and transactions.
	{Name: "producer.id.expiration.ms", Type: Int, Default: strconv.FormatInt(day, 10), Min: 1, Max: maxInt32,
		Doc: "How long an idempotent producer's sequence state is kept after its last write; a retry arriving later than this may be appended twice."},
	{Name: "transaction.max.timeout.ms", Type: Int, Default: "900000", Min: 1, Max: maxInt32,
		Doc: "Largest transaction timeout a producer may ask for."},
	{Name: "transactional.id.expiration.ms", Type: Int, Default: strconv.FormatInt(7*day, 10), Min: 1, Max: maxInt32,
		Doc: "How long an idle transactional id is remembered."},

	// Share groups (KIP-932). The group-level configs of the same name
	// without the "group." prefix override them per group (GroupProperties).
	{Name: "group.share.record.lock.duration.ms", Type: Int, Default: "30000", Min: 1000, Max: 3600000, Dynamic: true,
		Doc: "How long a share consumer holds the records it acquired before they are released for redelivery (the acquisition lock); a group may override it with share.record.lock.duration.ms within the min/max below."},
	{Name: "group.share.min.record.lock.duration.ms", Type: Int, Default: "15000", Min: 1000, Max: 3600000, Dynamic: true,
		Doc: "Smallest share.record.lock.duration.ms a group may set."},
	{Name: "group.share.max.record.lock.duration.ms", Type: Int, Default: "60000", Min: 1000, Max: 3600000, Dynamic: true,
		Doc: "Largest share.record.lock.duration.ms a group may set."},
	{Name: "group.share.delivery.count.limit", Type: Int, Default: "5", Min: 2, Max: 10, Dynamic: true,
		Doc: "Deliveries after which a record that is released or whose lock expires is archived (and dead-lettered, if the group has a dead-letter topic) instead of redelivered."},
	{Name: "group.share.min.delivery.count.limit", Type: Int, Default: "2", Min: 2, Max: 10, Dynamic: true,
		Doc: "Smallest share.delivery.count.limit a group may set."},
	{Name: "group.share.max.delivery.count.limit", Type: Int, Default: "10", Min: 2, Max: 10, Dynamic: true,
		Doc: "Largest share.delivery.count.limit a group may set."},
	{Name: "group.share.partition.max.record.locks", Type: Int, Default: "2000", Min: 100, Max: 10000, Dynamic: true,
		Doc: "Largest in-flight window of a share partition: records past the share-partition start offset that are acquired or not yet acknowledged."},
	{Name: "group.share.session.timeout.ms", Type: Int, Default: "45000", Min: 1000, Max: maxInt32, Dynamic: true,
		Doc: "A share-group member that sends no heartbeat for this long is removed and its records are released."},
	{Name: "group.share.heartbeat.interval.ms", Type: Int, Default: "5000", Min: 1000, Max: maxInt32, Dynamic: true,
		Doc: "How often share-group members are told to heartbeat."},
	{Name: "group.share.max.size", Type: Int, Default: "200", Min: 1, Max: 1000, Dynamic: true,
		Doc: "Most members of one share group (GROUP_MAX_SIZE_REACHED beyond)."},
	{Name: "group.share.max.share.sessions", Type: Int, Default: "2000", Min: 1, Max: maxInt32, Dynamic: true,
		Doc: "Most share sessions (one per share consumer connection) open at once (SHARE_SESSION_LIMIT_REACHED beyond)."},
	{Name: "errors.deadletterqueue.topic.name.prefix", Type: String, Default: "dlq.", Dynamic: true,
		Doc: "Prefix every share group's dead-letter topic must carry (KIP-1191); empty allows any name."},
	{Name: "errors.deadletterqueue.auto.create.topics.enable", Type: Bool, Default: "false", Dynamic: true,
		Doc: "Create a share group's dead-letter topic (with errors.deadletterqueue.group.enable=true) when the first record is dead-lettered; otherwise the topic must exist and opt in."},
	{Name: "errors.deadletterqueue.group.enable", Topic: "errors.deadletterqueue.group.enable", TopicOnly: true, Type: Bool, Default: "false",
		Doc: "Topic-level: the topic accepts dead-lettered records from share groups (KIP-1191)."},

	// Storage safety (idem's own).
	{Name: "idem.disk.reserve.bytes", Type: Long, Default: "8388608", Min: 0, Max: 1 << 40,
		Doc: "Space kept in <log.dirs>/space.reserve for metadata writes on a full disk: catalog changes (deleting topics to free space), checkpoints, transaction markers, offset commits. Records never use it. 0 keeps no reserve."},
	{Name: "idem.console.lag.sample.ms", Type: Long, Default: "10000", Min: 100, Max: 3600000,
		Doc: "How often the web console samples every consumer group's lag for the group page's lag-over-time chart; it keeps the last 360 samples of each group in memory."},
	{Name: "idem.log.sync.solo.max", Type: Int, Default: "4", Min: 0, Max: 1 << 20,
		Doc: "Fsyncs of different logs (partitions, coordinator state logs) that may run at once, each of its own file, before the group commit gathers further ones into one syncfs(2) of the data directory's file system: many partitions written together then cost a few syscalls per round instead of an fsync each. syncfs also writes back what other programs left dirty on that file system; on a volume shared with busy writers, a higher value or 0 (never) keeps that cost away."},
	{Name: "idem.log.open.files.max", Type: Int, Default: "1024", Min: 0, Max: maxInt32,
		Doc: "Most segment files the broker keeps open, over every partition and state log: idle ones (nothing reading or writing them, every write fsynced) beyond it are closed least recently used first and reopened on the next read or append. Files in use at the same moment may exceed it briefly. 0 keeps every segment file open."},
}

// byName and byTopic index the registry by broker and by topic-level name.
var byName, byTopic = func() (map[string]*Property, map[string]*Property) {
	n, t := map[string]*Property{}, map[string]*Property{}
	for _, p := range registry {
		if _, dup := n[p.Name]; dup {
			panic("config: duplicate property " + p.Name)
		}
		if !p.TopicOnly {
			n[p.Name] = p
		}
		if p.Topic != "" {
			t[p.Topic] = p
		}
	}
	return n, t
}()

// Lookup returns the broker property called name.
func Lookup(name string) (*Property, bool) {
	p, ok := byName[name]
	return p, ok
}

// LookupTopic returns the broker property that the topic-level property name
// overrides (retention.ms → log.retention.ms).
func LookupTopic(name string) (*Property, bool) {
	p, ok := byTopic[name]
	return p, ok
}

// Properties returns every broker property sorted by name.
func Properties() []*Property {
	var out []*Property
	for _, p := range registry {
		if !p.TopicOnly {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TopicProperties returns every property that can be set per topic, sorted by
// topic-level name.
func TopicProperties() []*Property {
	var out []*Property
	for _, p := range registry {
		if p.Topic != "" {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// Validate reports whether v is an acceptable value for p, with an error that
// names the property and says what is expected.
func (p *Property) Validate(v string) error {
	return p.validate(p.Name, v)
}

func (p *Property) validate(name, v string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w for %s=%q: %s", ErrInvalid, name, v, fmt.Sprintf(format, args...))
	}
	switch p.Type {
	case Bool:
		if v != "true" && v != "false" {
			return bad("want true or false")
		}
	case Double:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad("want a number")
		}
		if (p.Min != 0 || p.Max != 0) && (f < float64(p.Min) || f > float64(p.Max)) {
			return bad("want a value in [%d, %d]", p.Min, p.Max)
		}
	case Int, Short, Long:
		bits := map[Type]int{Int: 32, Short: 16, Long: 64}[p.Type]
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
		if err != nil {
			return bad("want a %d-bit integer", bits)
		}
		if (p.Min != 0 || p.Max != 0) && (n < p.Min || n > p.Max) {
			if p.Min == p.Max {
				return bad("only %d is supported", p.Min)
			}
			return bad("want a value in [%d, %d]", p.Min, p.Max)
		}
	}
	if len(p.Enum) > 0 {
		vals := []string{v}
		if p.Type == List {
			vals = strings.Split(v, ",")
		}
		for _, x := range vals {
			x = strings.TrimSpace(x)
			ok := false
			for _, e := range p.Enum {
				ok = ok || e == x
			}
			if !ok {
				return bad("want one of %s", strings.Join(p.Enum, ", "))
			}
		}
	}
	if p.check != nil {
		if err := p.check(v); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// Config is a set of broker property values. It is safe for concurrent use.
// Static values (the command line, the properties file) are fixed once the
// broker starts; Dynamic properties may also carry a dynamic value, set
// through the admin APIs and persisted by the broker, which wins over the
// static one (Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG over
// STATIC_BROKER_CONFIG).
type Config struct {
	mu  sync.RWMutex
	set map[string]string // mu guards set: explicitly set values only
	dyn map[string]string // mu guards dyn: dynamic values
}

// New returns a Config holding only defaults.
func New() *Config { return &Config{set: map[string]string{}, dyn: map[string]string{}} }

// Source says where a property's value comes from.
type Source int

// Sources, most specific last.
const (
	SourceDefault Source = iota
	SourceStatic
	SourceDynamic
)

// ErrReadOnly is wrapped by SetDynamic for properties that are read only at
// start, which a dynamic value could not change.
var ErrReadOnly = errors.New("property cannot be changed without a restart")

// ValidateDynamic checks that name may be set dynamically to value.
func (c *Config) ValidateDynamic(name, value string) error {
	p, ok := byName[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknown, name)
	}
	if !p.Dynamic {
		return fmt.Errorf("%w: %s (%w)", ErrInvalid, name, ErrReadOnly)
	}
	return p.Validate(value)
}

// SetDynamic validates and stores a dynamic value; value nil removes it.
// The caller persists it (and sets it again after a restart).
func (c *Config) SetDynamic(name string, value *string) error {
	if value == nil {
		if _, ok := byName[name]; !ok {
			return fmt.Errorf("%w %q", ErrUnknown, name)
		}
		c.mu.Lock()
		delete(c.dyn, name)
		c.mu.Unlock()
		return nil
	}
	if err := c.ValidateDynamic(name, *value); err != nil {
		return err
	}
	c.mu.Lock()
	c.dyn[name] = *value
	c.mu.Unlock()
	return nil
}

// Dynamic returns the dynamic values, by name.
func (c *Config) Dynamic() map[string]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]string, len(c.dyn))
	for k, v := range c.dyn {
		out[k] = v
	}
	return out
}

// ValueSource returns the value of name and where it comes from.
func (c *Config) ValueSource(name string) (string, Source) {
	p := mustLookup(name)
	c.mu.RLock()
	defer c.mu.RUnlock()
	if v, ok := c.dyn[name]; ok {
		return v, SourceDynamic
	}
	if v, ok := c.set[name]; ok {
		return v, SourceStatic
	}
	return p.Default, SourceDefault
}

// Set validates and stores one property.
func (c *Config) Set(name, value string) error {
	if err := ValidateProperty(name, value); err != nil {
		return err
	}
	c.mu.Lock()
	c.set[name] = value
	c.mu.Unlock()
	return c.check()
}

// check validates relations between properties.
func (c *Config) check() error {
	min, max := c.Int("group.min.session.timeout.ms"), c.Int("group.max.session.timeout.ms")
	if min > max {
		return fmt.Errorf("%w: group.min.session.timeout.ms (%d) is above group.max.session.timeout.ms (%d)", ErrInvalid, min, max)
	}
	return nil
}

// Value returns the value of name and whether it was set explicitly. A null
// property that is unset returns ("", false).
func (c *Config) Value(name string) (v string, explicit bool) {
	v, src := c.ValueSource(name)
	return v, src != SourceDefault
}

// IsNull reports whether name has no value (a Null property that is unset).
func (c *Config) IsNull(name string) bool {
	p := mustLookup(name)
	_, explicit := c.Value(name)
	return p.Null && !explicit
}

// String returns the value of a property as a string.
func (c *Config) String(name string) string {
	v, _ := c.Value(name)
	return v
}

// Int returns a numeric property (0 for an unset null property).
func (c *Config) Int(name string) int64 {
	v, _ := c.Value(name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("config: %s=%q is not numeric (validation should have caught it)", name, v))
	}
	return n
}

// Bool returns a boolean property.
func (c *Config) Bool(name string) bool {
	v, _ := c.Value(name)
	return v == "true"
}

// Float returns a double property.
func (c *Config) Float(name string) float64 {
	v, _ := c.Value(name)
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		panic(fmt.Sprintf("config: %s=%q is not a number (validation should have caught it)", name, v))
	}
	return f
}

// Millis returns a *.ms property as a duration.
func (c *Config) Millis(name string) time.Duration {
	return time.Duration(c.Int(name)) * time.Millisecond
}

// RetentionMs resolves log.retention.ms / .minutes / .hours the way Kafka does:
// the most specific one that is set wins. -1 (or any negative) means unlimited.
func (c *Config) RetentionMs() int64 {
	if !c.IsNull("log.retention.ms") {
		return c.Int("log.retention.ms")
	}
	if !c.IsNull("log.retention.minutes") {
		if m := c.Int("log.retention.minutes"); m >= 0 {
			return m * 60_000
		}
		return -1
	}
	if h := c.Int("log.retention.hours"); h >= 0 {
		return h * 3_600_000
	}
	return -1
}

// RollMs resolves log.roll.ms / log.roll.hours.
func (c *Config) RollMs() int64 {
	if !c.IsNull("log.roll.ms") {
		return c.Int("log.roll.ms")
	}
	return c.Int("log.roll.hours") * 3_600_000
}

// Effective returns the value the broker actually uses for name, resolving the
// retention and roll families; it is what DescribeConfigs reports.
func (c *Config) Effective(name string) (v string, null bool) {
	switch name {
	case "log.retention.ms":
		return strconv.FormatInt(c.RetentionMs(), 10), false
	case "log.roll.ms":
		return strconv.FormatInt(c.RollMs(), 10), false
	}
	if c.IsNull(name) {
		return "", true
	}
	return c.String(name), false
}

// Explicit returns the explicitly set properties, sorted by name.
func (c *Config) Explicit() map[string]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]string, len(c.set))
	for k, v := range c.set {
		out[k] = v
	}
	return out
}

func mustLookup(name string) *Property {
	p, ok := byName[name]
	if !ok {
		if p, ok = byTopic[name]; ok && p.TopicOnly {
			return p
		}
		panic("config: unknown property " + name)
	}
	return p
}

// ValidateTopic validates one topic-level property (retention.ms=…) and returns
// the broker property it overrides.
func ValidateTopic(name, value string) (*Property, error) {
	p, ok := byTopic[name]
	if !ok {
		return nil, fmt.Errorf("%w %q for a topic", ErrUnknown, name)
	}
	if err := p.validate(name, value); err != nil {
		return nil, err
	}
	return p, nil
}

// ParseProperties reads a Java-style properties file (name=value or name: value
// per line, # and ! comments, blank lines ignored). Line continuations and
// escapes are not supported; a line without a separator is an error naming the
// line number.
func ParseProperties(r io.Reader) ([][2]string, error) {
	var out [][2]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("line %d: want name=value, got %q", n, line)
		}
		out = append(out, [2]string{strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])})
	}
	return out, sc.Err()
}

// HostPort parses one listener address: host:port, optionally prefixed by
// NAME:// (the name is dropped; see ParseListeners).
func HostPort(v string) (host string, port int, err error) {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, "://"); i >= 0 {
		v = v[i+3:]
	}
	if strings.Contains(v, ",") {
		return "", 0, errors.New("one address expected, not a list")
	}
	h, p, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port: %v", err)
	}
	pn, err := strconv.Atoi(p)
	if err != nil || pn < 0 || pn > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, pn, nil
}

// checkRatio accepts a number in [lo, hi].
func checkRatio(lo, hi float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < lo || f > hi {
			return fmt.Errorf("want a number in [%g, %g]", lo, hi)
		}
		return nil
	}
}

func checkListeners(v string) error {
	ls, err := parseListenerList(v)
	if err == nil && len(ls) == 0 {
		err = errors.New("at least one listener is needed")
	}
	return err
}

func checkAdvertised(v string) error {
	ls, err := parseListenerList(v)
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l.Host == "" || l.Host == "0.0.0.0" || l.Host == "::" {
			return errors.New("an advertised host must be reachable by clients (not empty or a wildcard)")
		}
		if l.Port == 0 {
			return errors.New("an advertised port cannot be 0")
		}
	}
	return nil
}
