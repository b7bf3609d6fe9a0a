// Package archtest holds the tests of the architecture's rules that no
// single package can check about itself (docs/architecture.md). The rules are read from the Go tool (go list) and the
// type checker, never from grep: the import table below (layers), the
// dependency rules beside it, and the public API check (api_test.go).
package archtest

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/idem-dev/idem"

// layer is one row of the architecture: a package (or, ending in "/...",
// every package under a folder) and the module packages its non-test files
// may import. Test files may import anything. A row whose package does not
// exist yet (internal/topics, internal/statelog, internal/share, webhook)
// applies once it does.
type layer struct {
	pkg string
	// broker marks the packages an embedding program links: the broker
	// rules (TestBrokerLinksNoToolkitDependency, TestOnlyTheAPILayerKnowsKafkaErrorCodes)
	// apply to them.
	broker bool
	// kerr allows a broker package to import Kafka's error codes: only the
	// API layer turns Go errors into codes.
	kerr bool
	may  []string
}

// The groups that several rows name.
var (
	coordinators = []string{"internal/group", "internal/txn", "internal/share"}
	// toolkit is every public toolkit package: the ones users import.
	toolkit = []string{
		"dedupe", "dedupe/sqlitestore", "dedupe/pgstore", "dedupe/dedupeprom", "dedupe/dedupetest",
		"idempotency", "idempotency/sqlitestore", "idempotency/pgstore", "idempotency/redisstore",
		"idempotency/idempotencyprom", "idempotency/idempotencytest",
		"webhook", "webhook/sqlitestore", "webhook/pgstore", "webhook/webhookprom",
	}
)

// layers is the architecture, top to bottom: cmd/idem → broker →
// internal/kafka → internal/kafka/api → the coordinators and
// internal/statelog → internal/topics → internal/partition →
// internal/logstore, with internal/catalog and internal/config low. A row
// may import only what it lists, so the table also says who may use a
// package: internal/lab and internal/benchmark appear only in cmd/idem's
// row, internal/verify only in the lab's and the test kits'.
var layers = []layer{
	// `idem storage` works on a stopped broker's files and `idem user create
	// --data-dir` writes the first administrator into a stopped broker's
	// security store, so they reach those packages directly; everything
	// else goes through broker.
	{pkg: "cmd/idem", may: []string{"broker", "internal/config", "internal/lab", "internal/benchmark", "internal/clientprops", "internal/topics", "internal/logstore", "internal/security", "internal/dlq",
		"webhook", "webhook/sqlitestore", "webhook/pgstore", "webhook/webhookprom"}},
	{pkg: "examples/...", may: append([]string{"broker", "broker/brokertest"}, toolkit...)},

	// The broker, as an embedding program links it.
	{pkg: "broker", broker: true, may: concat([]string{"internal/brokerhook", "internal/admin", "internal/admin/api", "internal/admin/console", "internal/kafka", "internal/kafka/api", "internal/security"},
		coordinators, []string{"internal/statelog", "internal/topics", "internal/partition", "internal/logstore", "internal/catalog", "internal/config"})},
	{pkg: "broker/brokertest", broker: true, may: []string{"broker"}},
	{pkg: "internal/brokerhook", broker: true, may: []string{"internal/logstore"}},
	{pkg: "internal/admin", broker: true},
	// The admin API is a Kafka client of the broker's own listener (no
	// internals): it reads Kafka's error codes to answer HTTP statuses.
	{pkg: "internal/admin/api", broker: true, kerr: true, may: []string{"internal/admin", "internal/dlq", "internal/tail"}},
	{pkg: "internal/admin/console", broker: true, may: []string{"internal/admin", "internal/admin/api", "internal/dlq"}},
	// Dead-letter listing and redrive: a Kafka client (no internals) that
	// the admin API, the console and idem dlq share.
	{pkg: "internal/dlq", broker: true, kerr: true},
	{pkg: "internal/kafka", broker: true, may: []string{"internal/kafka/api", "internal/security"}},
	{pkg: "internal/kafka/api", broker: true, kerr: true, may: concat(coordinators,
		[]string{"internal/security", "internal/statelog", "internal/topics", "internal/partition", "internal/logstore", "internal/catalog", "internal/config"})},
	// Who a client is and what it may do: used by the wire server and the
	// API layer, keeps users, ACLs and quotas in a statelog.
	{pkg: "internal/security", broker: true, may: []string{"internal/statelog", "internal/logstore", "internal/config"}},
	{pkg: "internal/group", broker: true, may: []string{"internal/statelog", "internal/topics", "internal/logstore", "internal/config"}},
	{pkg: "internal/txn", broker: true, may: []string{"internal/statelog", "internal/topics", "internal/logstore", "internal/config"}},
	{pkg: "internal/share", broker: true, may: []string{"internal/statelog", "internal/topics", "internal/logstore", "internal/config"}},
	{pkg: "internal/statelog", broker: true, may: []string{"internal/topics", "internal/logstore", "internal/config"}},
	{pkg: "internal/topics", broker: true, may: []string{"internal/partition", "internal/logstore", "internal/catalog", "internal/config"}},
	{pkg: "internal/partition", broker: true, may: []string{"internal/logstore"}},
	{pkg: "internal/catalog", broker: true, may: []string{"internal/logstore", "internal/config"}},
	{pkg: "internal/logstore", broker: true},
	{pkg: "internal/config", broker: true},

	// The lab and the benchmark, which only the command line runs.
	{pkg: "internal/lab", may: append([]string{"internal/verify", "internal/clientprops"}, toolkit...)},
	{pkg: "internal/benchmark", may: []string{"internal/tail"}},
	// The end of a child process's stderr, for its error (the lab runner,
	// the scale benchmarks' brokers).
	{pkg: "internal/tail"},
	{pkg: "internal/verify"},
	// The -X client properties (TLS, SASL) of the CLI, the bench and the lab.
	{pkg: "internal/clientprops"},

	// The toolkit works against any Kafka cluster: it never imports the
	// broker's packages.
	// A driver lives in its own store package, so that a PostgreSQL-only
	// service does not link SQLite; shared SQL sits in each tree's internal.
	{pkg: "dedupe/...", may: append([]string{"dedupe/internal/storeutil"}, toolkit...)},
	{pkg: "idempotency/...", may: append([]string{"idempotency/internal/sqlcore"}, toolkit...)},
	{pkg: "webhook/...", may: toolkit},

	// Test support, imported by tests only: no row above lists it.
	{pkg: "internal/verify/verifytest", may: []string{"internal/verify"}},
	{pkg: "internal/testkit"},
	{pkg: "internal/dlq/dlqtest", may: []string{"broker/brokertest"}},
	{pkg: "internal/testkit/pgkit", may: []string{"internal/testkit"}},
	{pkg: "internal/testkit/brokerkit", may: []string{"internal/testkit", "broker", "broker/brokertest", "internal/brokerhook", "internal/logstore", "internal/security", "internal/verify"}},
	{pkg: "internal/testkit/txnkit", may: []string{"internal/testkit", "internal/verify"}},
	{pkg: "internal/archtest"},
	{pkg: "test/..."},
}

// knownViolations are imports that break the table today and are being
// removed on other branches; the lead deletes each entry when its fix is
// merged. An entry that no longer occurs fails the test, so none outlives
// its fix.
var knownViolations = []struct{ from, to, why string }{}

func concat(lists ...[]string) []string { return slices.Concat(lists...) }

// pkg is what go list says about one package of the module.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string // of the non-test files
	Deps       []string // every package the non-test files link, transitively
}

// rel is the package's path inside the module ("" for the root).
func (p pkg) rel() string { return strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/") }

// listModule returns every package of the module, from go list -json.
func listModule(t *testing.T) []pkg {
	t.Helper()
	pkgs, err := goList()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list returned only %d packages; the checks would prove nothing", len(pkgs))
	}
	return pkgs
}

// goList runs go list once for all the tests.
var goList = sync.OnceValues(func() ([]pkg, error) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
})

// rowOf returns the row of a package (path inside the module).
func rowOf(rel string) (layer, bool) {
	for _, l := range layers {
		if l.pkg == rel || strings.HasSuffix(l.pkg, "/...") && strings.HasPrefix(rel+"/", strings.TrimSuffix(l.pkg, "...")) {
			return l, true
		}
	}
	return layer{}, false
}

// inModule returns the path inside the module of an import path, or false.
func inModule(path string) (string, bool) {
	if path == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

// TestEveryImportFollowsTheLayers checks each import between the module's
// packages against the table, and that every package has a row: a new
// package needs a conscious decision about where it sits.
func TestEveryImportFollowsTheLayers(t *testing.T) {
	known := map[[2]string]bool{}
	for _, v := range knownViolations {
		known[[2]string{v.from, v.to}] = false
	}
	for _, p := range listModule(t) {
		row, ok := rowOf(p.rel())
		if !ok {
			t.Errorf("%s has no row in archtest's layers table: add one saying what it may import", p.rel())
			continue
		}
		for _, imp := range p.Imports {
			to, ok := inModule(imp)
			if !ok || slices.Contains(row.may, to) {
				continue
			}
			if seen, isKnown := known[[2]string{p.rel(), to}]; isKnown {
				if !seen {
					t.Logf("known violation: %s imports %s", p.rel(), to)
				}
				known[[2]string{p.rel(), to}] = true
				continue
			}
			t.Errorf("%s imports %s, which its row in archtest's layers table does not allow (it may import %v)", p.rel(), to, row.may)
		}
	}
	for _, v := range knownViolations {
		if !known[[2]string{v.from, v.to}] {
			t.Errorf("%s no longer imports %s: remove the entry from knownViolations (%s)", v.from, v.to, v.why)
		}
	}
}

// TestBrokerLinksNoToolkitDependency: the broker packages never link
// PostgreSQL, SQLite or the CLI library, so embedding a broker
// (brokertest.Run in a user's test) pulls in none of them.
func TestBrokerLinksNoToolkitDependency(t *testing.T) {
	forbidden := []string{"github.com/jackc/pgx", "modernc.org/sqlite", "github.com/spf13/cobra", "github.com/spf13/pflag"}
	checked := 0
	for _, p := range listModule(t) {
		if row, _ := rowOf(p.rel()); !row.broker {
			continue
		}
		checked++
		for _, dep := range p.Deps {
			for _, bad := range forbidden {
				if dep == bad || strings.HasPrefix(dep, bad+"/") {
					t.Errorf("broker package %s links %s", p.rel(), dep)
				}
			}
		}
	}
	if checked < 8 {
		t.Fatalf("only %d broker packages checked", checked)
	}
}

// TestToolkitLinksNoBrokerPackage: dedupe, idempotency and webhook work
// against any Kafka cluster, so they link no package of the broker, not
// even through another package.
func TestToolkitLinksNoBrokerPackage(t *testing.T) {
	for _, p := range listModule(t) {
		if !slices.Contains(toolkit, p.rel()) {
			continue
		}
		for _, dep := range p.Deps {
			if rel, ok := inModule(dep); ok && !slices.Contains(toolkit, rel) && !toolkitInternal(rel) {
				t.Errorf("toolkit package %s links %s", p.rel(), rel)
			}
		}
	}
}

// toolkitInternal reports whether rel is a toolkit tree's own internal
// package (shared SQL of its store packages).
func toolkitInternal(rel string) bool {
	for _, root := range []string{"dedupe/internal/", "idempotency/internal/", "webhook/internal/"} {
		if strings.HasPrefix(rel, root) {
			return true
		}
	}
	return false
}

// TestOnlyTheAPILayerKnowsKafkaErrorCodes: internal/kafka/api turns the Go
// errors of the packages below it into Kafka error codes, so no other
// broker package imports kerr (the client-side packages, such as the lab
// and the toolkit, read codes that brokers send and may).
func TestOnlyTheAPILayerKnowsKafkaErrorCodes(t *testing.T) {
	const kerr = "github.com/twmb/franz-go/pkg/kerr"
	api := false
	for _, p := range listModule(t) {
		row, _ := rowOf(p.rel())
		if !row.broker || !slices.Contains(p.Imports, kerr) {
			continue
		}
		if row.kerr {
			api = true
			continue
		}
		t.Errorf("%s imports kerr: only internal/kafka/api maps errors to Kafka error codes", p.rel())
	}
	if !api {
		t.Error("internal/kafka/api does not import kerr: the check looks at the wrong packages")
	}
}

// TestTheBinaryDoesNotLinkTesting: package testing registers its flags and
// runtime hooks in every binary that links it; the test helpers live in
// test-only packages (testkit, verifytest) so the idem binary does not.
func TestTheBinaryDoesNotLinkTesting(t *testing.T) {
	for _, p := range listModule(t) {
		if p.rel() == "cmd/idem" {
			if slices.Contains(p.Deps, "testing") {
				t.Errorf("cmd/idem links package testing, %s", whyLinked("./cmd/idem", "testing"))
			}
			return
		}
	}
	t.Fatal("cmd/idem not found")
}

// whyLinked names the module packages through which pkg links dep.
func whyLinked(pkg, dep string) string {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, pkg).Output()
	if err != nil {
		return err.Error()
	}
	var via []string
	for _, line := range strings.Split(string(out), "\n") {
		from, imports, _ := strings.Cut(line, ": ")
		if strings.HasPrefix(from, module) && slices.Contains(strings.Fields(imports), dep) {
			via = append(via, from)
		}
	}
	return fmt.Sprintf("imported by %v", via)
}

// TestStorageNeverCallsOS enforces logstore's rule that all file access goes
// through its FS interface (so the crash-simulating FS sees every write);
// only fs.go, which implements the OS FS, may import package os.
func TestStorageNeverCallsOS(t *testing.T) {
	var logstore pkg
	for _, p := range listModule(t) {
		if p.rel() == "internal/logstore" {
			logstore = p
		}
	}
	if len(logstore.GoFiles) < 5 {
		t.Fatalf("expected logstore's files, got %v", logstore.GoFiles)
	}
	fset := token.NewFileSet()
	for _, name := range logstore.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(logstore.Dir, name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "os" && name != "fs.go" {
				t.Errorf("%s imports os; storage code must go through logstore.FS", name)
			}
		}
	}
}
