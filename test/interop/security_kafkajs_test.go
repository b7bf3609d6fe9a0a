package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
)

// kafkajsDir is where CI installs kafkajs (.ci/run), shared with the
// transaction tests.
var kafkajsDir = filepath.Join("txn", "testdata", "kafkajs")

// TestKafkajsSASLAndACLs runs txn/testdata/kafkajs/security.js: kafkajs
// 2.2.4 over SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and ACL
// administration (v1 of the ACL APIs). kafkajs refuses a SaslHandshake
// answer whose mechanism list lacks its mechanism, which this exercises.
func TestKafkajsSASLAndACLs(t *testing.T) {
	node := testkit.RequireTool(t, "node", "install Node.js 20")
	if _, err := os.Stat(filepath.Join(kafkajsDir, "node_modules", "kafkajs", "package.json")); err != nil {
		testkit.Unavailable(t, "kafkajs is not installed (.ci/run installs it with npm): %v", err)
	}
	b := secureBroker(t, broker.WithTopics("js-secure"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "security.js", b.ListenerAddr("SASL_SSL"), b.caFile, "js-secure")
	cmd.Dir = kafkajsDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafkajs security.js: %v\nstderr:\n%s", err, stderr.String())
	}
	var res struct {
		WrongPassword *struct{ Name, Type, Message string } `json:"wrongPassword"`
		Described     []string                              `json:"described"`
		Consumed      []string                              `json:"consumed"`
		Deleted       int                                   `json:"deleted"`
		AfterDelete   *struct{ Name, Type, Message string } `json:"afterDelete"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	if res.WrongPassword == nil || !strings.Contains(strings.ToLower(res.WrongPassword.Message+res.WrongPassword.Type), "sasl") {
		t.Errorf("wrong password: %+v, want a SASL authentication failure", res.WrongPassword)
	}
	if !slices.Equal(res.Described, []string{"2:js-secure:1", "3:js-alice:1"}) {
		t.Errorf("described ACLs %v", res.Described)
	}
	if len(res.Consumed) != 5 {
		t.Errorf("alice consumed %v", res.Consumed)
	}
	if res.Deleted != 2 {
		t.Errorf("deleted %d ACLs, want 2", res.Deleted)
	}
	if res.AfterDelete == nil || !strings.Contains(res.AfterDelete.Type, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("alice's metadata after her ACLs were deleted: %+v, want TOPIC_AUTHORIZATION_FAILED", res.AfterDelete)
	}
}
