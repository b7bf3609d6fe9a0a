package interop

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// saramaSCRAM adapts franz-go's SCRAM client to sarama's SCRAMClient:
// sarama asks the user for one.
type saramaSCRAM struct {
	sha512 bool
	sess   sasl.Session
	first  []byte
	done   bool
}

func (s *saramaSCRAM) Begin(user, pass, _ string) error {
	a := scram.Auth{User: user, Pass: pass}
	m := a.AsSha256Mechanism()
	if s.sha512 {
		m = a.AsSha512Mechanism()
	}
	var err error
	s.sess, s.first, err = m.Authenticate(context.Background(), "")
	return err
}

func (s *saramaSCRAM) Step(challenge string) (string, error) {
	if s.first != nil {
		first := s.first
		s.first = nil
		return string(first), nil
	}
	done, next, err := s.sess.Challenge([]byte(challenge))
	s.done = done
	return string(next), err
}

func (s *saramaSCRAM) Done() bool { return s.done }

func saramaSASL(user, pass string) *sarama.Config {
	cfg := saramaConfig(sarama.V2_8_0_0)
	cfg.Net.SASL.Enable = true
	cfg.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
	cfg.Net.SASL.User, cfg.Net.SASL.Password = user, pass
	cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &saramaSCRAM{sha512: true} }
	cfg.Metadata.Retry.Max = 0
	return cfg
}

// TestSaramaSCRAMAndSecurityAdmin: sarama authenticates with
// SCRAM-SHA-512, is refused with a wrong password, and administers ACLs,
// SCRAM users and client quotas through its ClusterAdmin.
func TestSaramaSCRAMAndSecurityAdmin(t *testing.T) {
	b := secureBroker(t)
	addr := []string{b.ListenerAddr("SASL_PLAINTEXT")}
	if _, err := sarama.NewClusterAdmin(addr, saramaSASL("admin", "wrong")); err == nil {
		t.Fatal("sarama connected with a wrong password")
	} else if !errors.Is(err, sarama.ErrSASLAuthenticationFailed) && !strings.Contains(err.Error(), "SASL") {
		t.Logf("wrong password: %v", err)
	}
	adm, err := sarama.NewClusterAdmin(addr, saramaSASL("admin", "admin-pw"))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer adm.Close()
	if err := adm.CreateTopic("sarama-secure", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}

	// ACLs.
	res := sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: "sarama-", ResourcePatternType: sarama.AclPatternPrefixed}
	acl := sarama.Acl{Principal: "User:alice", Host: "*", Operation: sarama.AclOperationRead, PermissionType: sarama.AclPermissionAllow}
	if err := adm.CreateACLs([]*sarama.ResourceAcls{{Resource: res, Acls: []*sarama.Acl{&acl}}}); err != nil {
		t.Fatalf("CreateACLs: %v", err)
	}
	bad := sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: "x", ResourcePatternType: sarama.AclPatternMatch}
	if err := adm.CreateACLs([]*sarama.ResourceAcls{{Resource: bad, Acls: []*sarama.Acl{&acl}}}); err == nil {
		t.Error("an ACL with a MATCH pattern was created")
	}
	name := "sarama-secure"
	listed, err := adm.ListAcls(sarama.AclFilter{ResourceType: sarama.AclResourceTopic, ResourceName: &name,
		ResourcePatternTypeFilter: sarama.AclPatternMatch, Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny})
	if err != nil || len(listed) != 1 || listed[0].ResourceName != "sarama-" || len(listed[0].Acls) != 1 {
		t.Fatalf("ListAcls MATCH sarama-secure: %+v %v", listed, err)
	}
	principal := "User:alice"
	deleted, err := adm.DeleteACL(sarama.AclFilter{ResourceType: sarama.AclResourceAny, Principal: &principal,
		ResourcePatternTypeFilter: sarama.AclPatternAny, Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}, false)
	if err != nil || len(deleted) != 1 {
		t.Fatalf("DeleteACL: %+v %v", deleted, err)
	}

	// SCRAM users: an empty salt (sarama's default when none is given) is
	// refused, as it would defeat salting; create carol, log in as her,
	// delete her.
	up, err := adm.UpsertUserScramCredentials([]sarama.AlterUserScramCredentialsUpsert{{
		Name: "nosalt", Mechanism: sarama.SCRAM_MECHANISM_SHA_512, Iterations: 8192, Password: []byte("pw"),
	}})
	if err != nil || len(up) != 1 || up[0].ErrorCode != sarama.KError(93) { // UNACCEPTABLE_CREDENTIAL (sarama has no name for it)
		t.Errorf("an empty salt: %+v %v, want UNACCEPTABLE_CREDENTIAL", up, err)
	}
	up, err = adm.UpsertUserScramCredentials([]sarama.AlterUserScramCredentialsUpsert{{
		Name: "carol", Mechanism: sarama.SCRAM_MECHANISM_SHA_512, Iterations: 8192, Salt: []byte("a salt for carol"), Password: []byte("carol-pw"),
	}})
	if err != nil || len(up) != 1 || up[0].ErrorCode != sarama.ErrNoError {
		t.Fatalf("UpsertUserScramCredentials: %+v %v", up, err)
	}
	users, err := adm.DescribeUserScramCredentials([]string{"carol"})
	if err != nil || len(users) != 1 || users[0].ErrorCode != sarama.ErrNoError || len(users[0].CredentialInfos) != 1 || users[0].CredentialInfos[0].Iterations != 8192 {
		t.Fatalf("DescribeUserScramCredentials: %+v %v", users, err)
	}
	carol, err := sarama.NewClient(addr, saramaSASL("carol", "carol-pw"))
	if err != nil {
		t.Fatalf("carol logs in: %v", err)
	}
	carol.Close()
	if _, err := adm.DeleteUserScramCredentials([]sarama.AlterUserScramCredentialsDelete{{Name: "carol", Mechanism: sarama.SCRAM_MECHANISM_SHA_512}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sarama.NewClient(addr, saramaSASL("carol", "carol-pw")); err == nil {
		t.Error("a deleted user logged in")
	}

	// Client quotas.
	entity := []sarama.QuotaEntityComponent{{EntityType: sarama.QuotaEntityClientID, MatchType: sarama.QuotaMatchExact, Name: "sarama-app"}}
	if err := adm.AlterClientQuotas(entity, sarama.ClientQuotasOp{Key: "producer_byte_rate", Value: 4096}, false); err != nil {
		t.Fatalf("AlterClientQuotas: %v", err)
	}
	if err := adm.AlterClientQuotas(entity, sarama.ClientQuotasOp{Key: "bogus_rate", Value: 1}, false); err == nil {
		t.Error("an unknown quota key was accepted")
	}
	quotas, err := adm.DescribeClientQuotas([]sarama.QuotaFilterComponent{{EntityType: sarama.QuotaEntityClientID, MatchType: sarama.QuotaMatchExact, Match: "sarama-app"}}, false)
	if err != nil || len(quotas) != 1 || quotas[0].Values["producer_byte_rate"] != 4096 {
		t.Fatalf("DescribeClientQuotas: %+v %v", quotas, err)
	}

	// alice, authenticated but without ACLs, cannot even list the topic.
	alice, err := sarama.NewClient(addr, saramaSASL("alice", "alice-pw"))
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	defer alice.Close()
	topics, err := alice.Topics()
	if err != nil || len(topics) != 0 {
		t.Errorf("alice sees topics %v (%v)", topics, err)
	}
}
