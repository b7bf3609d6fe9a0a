package broker_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// lockedBroker runs a broker with only a SASL listener, the authorizer on,
// admin as the super user, and users admin, alice and bob.
func lockedBroker(t *testing.T, extra ...broker.Option) *brokertest.Broker {
	t.Helper()
	dir := t.TempDir()
	brokerkit.SeedUsers(t, dir, "admin", "alice", "bob")
	return brokertest.Run(t, append([]broker.Option{
		broker.WithDataDir(dir),
		broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:admin"),
	}, extra...)...)
}

func userClient(t *testing.T, b *brokertest.Broker, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return b.Client(t, append([]kgo.Opt{kgo.SASL(scram.Auth{User: user, Pass: user + "-pw"}.AsSha256Mechanism())}, opts...)...)
}

// codesOf collects every ErrorCode field of a response.
func codesOf(resp kmsg.Response) []int16 {
	var codes []int16
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16 {
					codes = append(codes, int16(v.Field(i).Int()))
				} else if f.IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() != reflect.Uint8 {
				for i := range v.Len() {
					walk(v.Index(i))
				}
			}
		}
	}
	walk(reflect.ValueOf(resp))
	return codes
}

// TestEveryAPIRefusesAPrincipalWithoutACLs calls every API that touches a
// resource as alice, who has no ACL: each answers its documented
// authorization error, names nothing alice may not see, and changes
// nothing.
func TestEveryAPIRefusesAPrincipalWithoutACLs(t *testing.T) {
	b := lockedBroker(t)
	ctx := context.Background()
	admin := userClient(t, b, "admin", kgo.DefaultProduceTopic("secret"))
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "secret"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ProduceSync(ctx, kgo.StringRecord("classified")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	commit := kadm.Offsets{}
	commit.AddOffset("secret", 0, 1, -1)
	if _, err := adm.CommitOffsets(ctx, "secret-group", commit); err != nil {
		t.Fatal(err)
	}

	alice := userClient(t, b, "alice")
	aliceV3 := userClient(t, b, "alice", kgo.MaxVersions(kversion.V3_5_0()))
	topicAuth, groupAuth, clusterAuth, txnAuth := kerr.TopicAuthorizationFailed.Code, kerr.GroupAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code, kerr.TransactionalIDAuthorizationFailed.Code
	str := kmsg.StringPtr
	// Each request names one resource (Metadata two): its answer must
	// carry want once per resource and no other code but the 0 of
	// top-level fields.
	type call struct {
		req  kmsg.Request
		want int16
	}
	produce := kmsg.NewPtrProduceRequest()
	produce.Acks = -1
	produce.TimeoutMillis = 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "secret"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = []byte("not even a batch: refused before it is read")
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)

	fetch := kmsg.NewPtrFetchRequest()
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "secret"
	ft.Partitions = append(ft.Partitions, kmsg.NewFetchRequestTopicPartition())
	fetch.Topics = append(fetch.Topics, ft)

	listOffsets := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "secret"
	lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
	listOffsets.Topics = append(listOffsets.Topics, lt)

	mdNamed := kmsg.NewPtrMetadataRequest()
	for _, n := range []string{"secret", "does-not-exist"} {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = str(n)
		mdNamed.Topics = append(mdNamed.Topics, mt)
	}
	mdNamed.AllowAutoTopicCreation = true

	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "new-topic", 1, 1
	create.Topics = append(create.Topics, ct)

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TopicNames = []string{"secret"}
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = str("secret")
	del.Topics = append(del.Topics, dt)

	delRecords := kmsg.NewPtrDeleteRecordsRequest()
	drt := kmsg.NewDeleteRecordsRequestTopic()
	drt.Topic = "secret"
	drp := kmsg.NewDeleteRecordsRequestTopicPartition()
	drp.Offset = 1
	drt.Partitions = append(drt.Partitions, drp)
	delRecords.Topics = append(delRecords.Topics, drt)

	createParts := kmsg.NewPtrCreatePartitionsRequest()
	cpt := kmsg.NewCreatePartitionsRequestTopic()
	cpt.Topic, cpt.Count = "secret", 3
	createParts.Topics = append(createParts.Topics, cpt)

	descTopicConfig := kmsg.NewPtrDescribeConfigsRequest()
	dcr := kmsg.NewDescribeConfigsRequestResource()
	dcr.ResourceType, dcr.ResourceName = kmsg.ConfigResourceTypeTopic, "secret"
	descTopicConfig.Resources = append(descTopicConfig.Resources, dcr)
	descBrokerConfig := kmsg.NewPtrDescribeConfigsRequest()
	dbr := kmsg.NewDescribeConfigsRequestResource()
	dbr.ResourceType, dbr.ResourceName = kmsg.ConfigResourceTypeBroker, "1"
	descBrokerConfig.Resources = append(descBrokerConfig.Resources, dbr)

	oeo := kmsg.NewPtrOffsetForLeaderEpochRequest()
	ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
	ot.Topic = "secret"
	ot.Partitions = append(ot.Partitions, kmsg.NewOffsetForLeaderEpochRequestTopicPartition())
	oeo.Topics = append(oeo.Topics, ot)

	descProducers := kmsg.NewPtrDescribeProducersRequest()
	dpt := kmsg.NewDescribeProducersRequestTopic()
	dpt.Topic, dpt.Partitions = "secret", []int32{0}
	descProducers.Topics = append(descProducers.Topics, dpt)

	offCommit := kmsg.NewPtrOffsetCommitRequest()
	offCommit.Group, offCommit.Generation = "secret-group", -1
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = "secret"
	ocp := kmsg.NewOffsetCommitRequestTopicPartition()
	ocp.Offset = 0
	oct.Partitions = append(oct.Partitions, ocp)
	offCommit.Topics = append(offCommit.Topics, oct)

	offFetch := kmsg.NewPtrOffsetFetchRequest()
	offFetch.Group = "secret-group"
	ofg := kmsg.NewOffsetFetchRequestGroup()
	ofg.Group = "secret-group"
	offFetch.Groups = append(offFetch.Groups, ofg)

	findGroup := kmsg.NewPtrFindCoordinatorRequest()
	findGroup.CoordinatorKey, findGroup.CoordinatorKeys = "secret-group", []string{"secret-group"}
	findTxn := kmsg.NewPtrFindCoordinatorRequest()
	findTxn.CoordinatorType, findTxn.CoordinatorKey, findTxn.CoordinatorKeys = 1, "secret-txn", []string{"secret-txn"}

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = "secret-group", "consumer", 10000, 10000
	jp := kmsg.NewJoinGroupRequestProtocol()
	jp.Name = "range"
	join.Protocols = append(join.Protocols, jp)
	heartbeat := kmsg.NewPtrHeartbeatRequest()
	heartbeat.Group, heartbeat.MemberID = "secret-group", "m"
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group, leave.MemberID = "secret-group", "m"
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = "m"
	leave.Members = append(leave.Members, lm)
	syncg := kmsg.NewPtrSyncGroupRequest()
	syncg.Group, syncg.MemberID = "secret-group", "m"
	descGroups := kmsg.NewPtrDescribeGroupsRequest()
	descGroups.Groups = []string{"secret-group"}
	delGroups := kmsg.NewPtrDeleteGroupsRequest()
	delGroups.Groups = []string{"secret-group"}
	offDelete := kmsg.NewPtrOffsetDeleteRequest()
	offDelete.Group = "secret-group"
	odt := kmsg.NewOffsetDeleteRequestTopic()
	odt.Topic, odt.Partitions = "secret", append(odt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
	offDelete.Topics = append(offDelete.Topics, odt)

	initTxn := kmsg.NewPtrInitProducerIDRequest()
	initTxn.TransactionalID, initTxn.TransactionTimeoutMillis = str("secret-txn"), 10000
	initIdem := kmsg.NewPtrInitProducerIDRequest()
	addParts := kmsg.NewPtrAddPartitionsToTxnRequest()
	addParts.TransactionalID = "secret-txn"
	apt := kmsg.NewAddPartitionsToTxnRequestTopic()
	apt.Topic, apt.Partitions = "secret", []int32{0}
	addParts.Topics = append(addParts.Topics, apt)
	addPartsBatched := kmsg.NewPtrAddPartitionsToTxnRequest()
	apx := kmsg.NewAddPartitionsToTxnRequestTransaction()
	apx.TransactionalID = "secret-txn"
	apxt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
	apxt.Topic, apxt.Partitions = "secret", []int32{0}
	apx.Topics = append(apx.Topics, apxt)
	addPartsBatched.Transactions = append(addPartsBatched.Transactions, apx)
	addOffsets := kmsg.NewPtrAddOffsetsToTxnRequest()
	addOffsets.TransactionalID, addOffsets.Group = "secret-txn", "secret-group"
	endTxn := kmsg.NewPtrEndTxnRequest()
	endTxn.TransactionalID = "secret-txn"
	txnCommit := kmsg.NewPtrTxnOffsetCommitRequest()
	txnCommit.TransactionalID, txnCommit.Group = "secret-txn", "secret-group"
	tct := kmsg.NewTxnOffsetCommitRequestTopic()
	tct.Topic = "secret"
	tct.Partitions = append(tct.Partitions, kmsg.NewTxnOffsetCommitRequestTopicPartition())
	txnCommit.Topics = append(txnCommit.Topics, tct)
	descTxn := kmsg.NewPtrDescribeTransactionsRequest()
	descTxn.TransactionalIDs = []string{"secret-txn"}

	descACLs := kmsg.NewPtrDescribeACLsRequest()
	descACLs.ResourceType, descACLs.ResourcePatternType, descACLs.Operation, descACLs.PermissionType = 1, 1, 1, 1
	createACLs := kmsg.NewPtrCreateACLsRequest()
	cc := kmsg.NewCreateACLsRequestCreation()
	cc.ResourceType, cc.ResourceName, cc.ResourcePatternType = 2, "secret", 3
	cc.Principal, cc.Host, cc.Operation, cc.PermissionType = "User:alice", "*", 3, 3
	createACLs.Creations = append(createACLs.Creations, cc)
	deleteACLs := kmsg.NewPtrDeleteACLsRequest()
	df := kmsg.NewDeleteACLsRequestFilter()
	df.ResourceType, df.ResourcePatternType, df.Operation, df.PermissionType = 1, 1, 1, 1
	deleteACLs.Filters = append(deleteACLs.Filters, df)
	descScram := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
	alterScram := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	del1 := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
	del1.Name, del1.Mechanism = "admin", 1
	alterScram.Deletions = append(alterScram.Deletions, del1)
	descQuotas := kmsg.NewPtrDescribeClientQuotasRequest()
	alterQuotas := kmsg.NewPtrAlterClientQuotasRequest()
	aqe := kmsg.NewAlterClientQuotasRequestEntry()
	aqEntity := kmsg.NewAlterClientQuotasRequestEntryEntity()
	aqEntity.Type, aqEntity.Name = "user", str("alice")
	aqOp := kmsg.NewAlterClientQuotasRequestEntryOp()
	aqOp.Key, aqOp.Value = "producer_byte_rate", 1e12
	aqe.Entity, aqe.Ops = append(aqe.Entity, aqEntity), append(aqe.Ops, aqOp)
	alterQuotas.Entries = append(alterQuotas.Entries, aqe)
	descCluster := kmsg.NewPtrDescribeClusterRequest()
	descLogDirs := kmsg.NewPtrDescribeLogDirsRequest()
	// Share groups (KIP-932), consumer groups (KIP-848), config alteration.
	shareHB := kmsg.NewPtrShareGroupHeartbeatRequest()
	shareHB.GroupID, shareHB.MemberID, shareHB.MemberEpoch, shareHB.SubscribedTopicNames = "secret-share", "m1", 0, []string{"secret"}
	shareDesc := kmsg.NewPtrShareGroupDescribeRequest()
	shareDesc.GroupIDs = []string{"secret-share"}
	shareFetch := kmsg.NewPtrShareFetchRequest()
	shareFetch.GroupID, shareFetch.MemberID = str("secret-share"), str("m1")
	shareAck := kmsg.NewPtrShareAcknowledgeRequest()
	shareAck.GroupID, shareAck.MemberID, shareAck.ShareSessionEpoch = str("secret-share"), str("m1"), 1
	shareOffsets := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	sog := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
	sog.GroupID = "secret-share"
	shareOffsets.Groups = append(shareOffsets.Groups, sog)
	alterShare := kmsg.NewPtrAlterShareGroupOffsetsRequest()
	alterShare.GroupID = "secret-share"
	deleteShare := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
	deleteShare.GroupID = "secret-share"
	consumerHB := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	consumerHB.Group, consumerHB.MemberID, consumerHB.MemberEpoch, consumerHB.SubscribedTopicNames = "secret-848", "m1", 0, []string{"secret"}
	consumerHB.RebalanceTimeoutMillis = 5000
	consumerDesc := kmsg.NewPtrConsumerGroupDescribeRequest()
	consumerDesc.Groups = []string{"secret-848"}
	alterGroupConfig := kmsg.NewPtrIncrementalAlterConfigsRequest()
	agc := kmsg.NewIncrementalAlterConfigsRequestResource()
	agc.ResourceType, agc.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "secret-share"
	alterGroupConfig.Resources = append(alterGroupConfig.Resources, agc)
	alterBrokerConfig := kmsg.NewPtrAlterConfigsRequest()
	abc := kmsg.NewAlterConfigsRequestResource()
	abc.ResourceType = kmsg.ConfigResourceTypeBroker
	alterBrokerConfig.Resources = append(alterBrokerConfig.Resources, abc)

	for name, c := range map[string]call{
		"Produce":                          {produce, topicAuth},
		"Fetch":                            {fetch, topicAuth},
		"ListOffsets":                      {listOffsets, topicAuth},
		"Metadata (named)":                 {mdNamed, topicAuth},
		"CreateTopics":                     {create, topicAuth},
		"DeleteTopics":                     {del, topicAuth},
		"DeleteRecords":                    {delRecords, topicAuth},
		"CreatePartitions":                 {createParts, topicAuth},
		"DescribeConfigs (topic)":          {descTopicConfig, topicAuth},
		"DescribeConfigs (broker)":         {descBrokerConfig, clusterAuth},
		"OffsetForLeaderEpoch":             {oeo, topicAuth},
		"DescribeProducers":                {descProducers, topicAuth},
		"OffsetCommit":                     {offCommit, groupAuth},
		"OffsetFetch":                      {offFetch, groupAuth},
		"FindCoordinator (group)":          {findGroup, groupAuth},
		"FindCoordinator (txn)":            {findTxn, txnAuth},
		"JoinGroup":                        {join, groupAuth},
		"Heartbeat":                        {heartbeat, groupAuth},
		"LeaveGroup":                       {leave, groupAuth},
		"SyncGroup":                        {syncg, groupAuth},
		"DescribeGroups":                   {descGroups, groupAuth},
		"DeleteGroups":                     {delGroups, groupAuth},
		"OffsetDelete":                     {offDelete, groupAuth},
		"InitProducerId (txn)":             {initTxn, txnAuth},
		"InitProducerId (idempotent)":      {initIdem, clusterAuth},
		"AddPartitionsToTxn":               {addParts, txnAuth},
		"AddPartitionsToTxn (v5, batched)": {addPartsBatched, clusterAuth},
		"AddOffsetsToTxn":                  {addOffsets, txnAuth},
		"EndTxn":                           {endTxn, txnAuth},
		"TxnOffsetCommit":                  {txnCommit, txnAuth},
		"DescribeTransactions":             {descTxn, txnAuth},
		"DescribeAcls":                     {descACLs, clusterAuth},
		"CreateAcls":                       {createACLs, clusterAuth},
		"DeleteAcls":                       {deleteACLs, clusterAuth},
		"DescribeUserScramCredentials":     {descScram, clusterAuth},
		"AlterUserScramCredentials":        {alterScram, clusterAuth},
		"DescribeCluster":                  {descCluster, clusterAuth},
		"DescribeClientQuotas":             {descQuotas, clusterAuth},
		"AlterClientQuotas":                {alterQuotas, clusterAuth},
		"DescribeLogDirs":                  {descLogDirs, clusterAuth},
		"ShareGroupHeartbeat":              {shareHB, groupAuth},
		"ShareGroupDescribe":               {shareDesc, groupAuth},
		"ShareFetch":                       {shareFetch, groupAuth},
		"ShareAcknowledge":                 {shareAck, groupAuth},
		"DescribeShareGroupOffsets":        {shareOffsets, groupAuth},
		"AlterShareGroupOffsets":           {alterShare, groupAuth},
		"DeleteShareGroupOffsets":          {deleteShare, groupAuth},
		"ConsumerGroupHeartbeat":           {consumerHB, groupAuth},
		"ConsumerGroupDescribe":            {consumerDesc, groupAuth},
		"IncrementalAlterConfigs (group)":  {alterGroupConfig, groupAuth},
		"AlterConfigs (broker)":            {alterBrokerConfig, clusterAuth},
	} {
		// Straight to the broker: kgo's sharding would look up
		// coordinators first and report their refusal instead.
		cl := alice
		if c.req == kmsg.Request(addParts) {
			cl = aliceV3 // the clients' form of AddPartitionsToTxn; v4+ is the brokers' own
		}
		resp, err := cl.Broker(1).Request(ctx, c.req)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		codes := codesOf(resp)
		wantN := 1
		if c.req == kmsg.Request(mdNamed) {
			wantN = 2
		}
		got := 0
		for _, x := range codes {
			if x == c.want {
				got++
			} else if x != 0 {
				got = -100
			}
		}
		if got != wantN {
			t.Errorf("%s: codes %v, want %v for each of its %d resources", name, codes, kerr.ErrorForCode(c.want), wantN)
		}
	}

	// Listing leaks no names.
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, mt := range md.Topics {
		t.Errorf("Metadata (all) shows topic %v to a principal without DESCRIBE", *mt.Topic)
	}
	lg, err := kmsg.NewPtrListGroupsRequest().RequestWith(ctx, alice)
	if err != nil || len(lg.Groups) != 0 {
		t.Errorf("ListGroups shows %+v (%v) to a principal without DESCRIBE", lg.Groups, err)
	}
	lt2, err := kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, alice)
	if err != nil || len(lt2.TransactionStates) != 0 {
		t.Errorf("ListTransactions shows %+v (%v)", lt2, err)
	}

	// And nothing changed.
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := topics.Names(); !slices.Equal(names, []string{"secret"}) {
		t.Errorf("topics after the refusals: %v, want only secret (nothing created or deleted)", names)
	}
	if td := topics["secret"]; len(td.Partitions) != 1 {
		t.Errorf("secret has %d partitions after a refused CreatePartitions", len(td.Partitions))
	}
	ends, err := adm.ListStartOffsets(ctx, "secret")
	if err != nil || ends["secret"][0].Offset != 0 {
		t.Errorf("start offset of secret after a refused DeleteRecords: %+v %v", ends, err)
	}
	offs, err := adm.FetchOffsets(ctx, "secret-group")
	if err != nil || offs["secret"][0].At != 1 {
		t.Errorf("secret-group's offset after refused commits and deletes: %+v %v", offs, err)
	}
	if q, err := adm.DescribeClientQuotas(ctx, false, nil); err != nil || len(q) != 0 {
		t.Errorf("quotas after a refused alteration: %+v %v", q, err)
	}
	if users, err := adm.DescribeUserSCRAMs(ctx); err != nil || len(users) != 3 {
		t.Errorf("users after a refused deletion: %v %v", users, err)
	}
	if acls, err := adm.DescribeACLs(ctx, kadm.NewACLs().AnyResource().Allow().AllowHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny)); err != nil || len(acls) != 1 || len(acls[0].Described) != 0 {
		t.Errorf("ACLs after a refused creation: %+v %v", acls, err)
	}
}

// TestACLsApplyToOpenConnectionsAtOnce: bob's consumer works with an ACL
// and fails on its next request once the ACL is deleted, on the same
// connection; DENY beats ALLOW.
func TestACLsApplyToOpenConnectionsAtOnce(t *testing.T) {
	b := lockedBroker(t, broker.WithTopics("shared-orders"))
	ctx := context.Background()
	adm := kadm.NewClient(userClient(t, b, "admin"))
	acl := kadm.NewACLs().Topics("shared-").ResourcePatternType(kadm.ACLPatternPrefixed).Allow("User:bob").Operations(kadm.OpRead, kadm.OpWrite)
	if res, err := adm.CreateACLs(ctx, acl); err != nil || res[0].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	bob := userClient(t, b, "bob")
	read := func() int16 {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "shared-orders"
		rt.Partitions = append(rt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := read(); c != 0 {
		t.Fatalf("with READ (which implies DESCRIBE): %v", kerr.ErrorForCode(c))
	}
	deny := kadm.NewACLs().Topics("shared-orders").Deny("User:bob").Operations(kadm.OpDescribe)
	if _, err := adm.CreateACLs(ctx, deny); err != nil {
		t.Fatal(err)
	}
	if c := read(); c != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("after a DENY: %v, want TOPIC_AUTHORIZATION_FAILED", kerr.ErrorForCode(c))
	}
	if _, err := adm.DeleteACLs(ctx, kadm.NewACLs().Topics("shared-orders").Deny("User:bob").DenyHosts().Operations(kadm.OpDescribe)); err != nil {
		t.Fatal(err)
	}
	if c := read(); c != 0 {
		t.Fatalf("after deleting the DENY: %v", kerr.ErrorForCode(c))
	}
	// bob can produce and consume under the prefixed ACL.
	cl := userClient(t, b, "bob", kgo.DefaultProduceTopic("shared-orders"), kgo.ConsumeTopics("shared-orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("hello")).FirstErr(); err != nil {
		t.Fatalf("bob produce: %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if fs := cl.PollFetches(pctx); len(fs.Records()) != 1 {
		t.Fatalf("bob consume: %v", fs.Errors())
	}
	// IncludeTopicAuthorizedOperations shows READ, WRITE and DESCRIBE.
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("shared-orders")
	md.Topics = append(md.Topics, mt)
	md.IncludeTopicAuthorizedOperations = true
	resp, err := md.RequestWith(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	want := int32(1<<security.OpRead | 1<<security.OpWrite | 1<<security.OpDescribe)
	if got := resp.Topics[0].AuthorizedOperations; got != want {
		t.Errorf("authorized operations %b, want %b", got, want)
	}
	if !strings.Contains(b.ListenerAddr("SASL_PLAINTEXT"), "127.0.0.1") {
		t.Error("listener address")
	}
}

// TestACLsLetTransactionsGroupsAndCreationThrough: with exactly the ACLs
// Kafka's table asks for, a transactional producer, a consumer group and
// topic auto-creation work for an ordinary user, and DescribeGroups reports
// the operations the user holds.
func TestACLsLetTransactionsGroupsAndCreationThrough(t *testing.T) {
	b := lockedBroker(t, broker.WithTopics("bob-in"))
	ctx := context.Background()
	adm := kadm.NewClient(userClient(t, b, "admin"))
	for _, acl := range []*kadm.ACLBuilder{
		kadm.NewACLs().Topics("bob-").ResourcePatternType(kadm.ACLPatternPrefixed).Allow("User:bob").Operations(kadm.OpRead, kadm.OpWrite, kadm.OpCreate),
		kadm.NewACLs().TransactionalIDs("bob-txn").Allow("User:bob").Operations(kadm.OpWrite),
		kadm.NewACLs().Groups("bob-group").Allow("User:bob").Operations(kadm.OpRead),
	} {
		if res, err := adm.CreateACLs(ctx, acl); err != nil || res[0].Err != nil {
			t.Fatalf("%+v %v", res, err)
		}
	}
	// Auto-creation with CREATE on the topic prefix.
	prod := userClient(t, b, "bob", kgo.TransactionalID("bob-txn"), kgo.DefaultProduceTopic("bob-auto"), kgo.AllowAutoTopicCreation())
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, kgo.StringRecord("in a transaction")).FirstErr(); err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	cons := userClient(t, b, "bob", kgo.ConsumerGroup("bob-group"), kgo.ConsumeTopics("bob-auto"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if fs := cons.PollFetches(pctx); len(fs.Records()) != 1 {
		t.Fatalf("group consume: %v", fs.Errors())
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit offsets: %v", err)
	}
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"bob-group"}
	req.IncludeAuthorizedOperations = true
	resp, err := userClient(t, b, "bob").Broker(1).Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.(*kmsg.DescribeGroupsResponse).Groups[0]
	if want := int32(1<<security.OpRead | 1<<security.OpDescribe); g.ErrorCode != 0 || g.AuthorizedOperations != want {
		t.Errorf("DescribeGroups as bob: %v, operations %b, want %b", kerr.ErrorForCode(g.ErrorCode), g.AuthorizedOperations, want)
	}
	// A transactional id bob may not use is refused before anything starts.
	other := userClient(t, b, "bob", kgo.TransactionalID("someone-else"), kgo.DefaultProduceTopic("bob-auto"))
	err = other.BeginTransaction()
	if err == nil {
		err = other.ProduceSync(ctx, kgo.StringRecord("x")).FirstErr()
	}
	if !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Errorf("producing with another transactional id: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err)
	}
}
