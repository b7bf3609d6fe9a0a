package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/brokerkit"
)

// TestSecurityThroughput measures, in one run and round by round, produce
// and consume throughput of 1 KiB records over PLAINTEXT and over SASL_SSL
// (SCRAM-SHA-256, TLS 1.3), and produce throughput with the authorizer off
// and on with 1,000 ACLs defined. It reports ratios, which survive a busy
// machine better than absolute figures. Opt-in, as a benchmark:
//
//	IDEM_SECURITY_BENCH=3 go test ./broker -run TestSecurityThroughput -v
func TestSecurityThroughput(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("IDEM_SECURITY_BENCH"))
	if rounds <= 0 {
		t.Skip("set IDEM_SECURITY_BENCH=<rounds> to run")
	}
	const records, size, pairs = 30_000, 1024, 5
	ca := testkit.NewCA(t, "bench CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	tlsProps := []broker.Option{
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)),
	}
	b := brokertest.Run(t, append(tlsProps, broker.WithProperty("listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"))...)
	createUser(t, b, "bench", "bench-pw", kadm.ScramSha256)
	saslSSL := []kgo.Opt{kgo.SeedBrokers(b.ListenerAddr("SASL_SSL")), kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool()}),
		kgo.SASL(scram.Auth{User: "bench", Pass: "bench-pw"}.AsSha256Mechanism())}

	// The authorizer variant: a second broker whose user is allowed by one
	// prefixed ACL among 1,000.
	dir := t.TempDir()
	brokerkit.SeedUsers(t, dir, "admin", "bob")
	az := brokertest.Run(t, broker.WithDataDir(dir), broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("authorizer.class.name", "idem"), broker.WithProperty("super.users", "User:admin"))
	adm := kadm.NewClient(userClient(t, az, "admin"))
	ctx := context.Background()
	acls := kadm.NewACLs().ResourcePatternType(kadm.ACLPatternLiteral).Allow("User:bob").Operations(kadm.OpRead, kadm.OpWrite)
	var names []string
	for i := range 499 {
		names = append(names, fmt.Sprintf("other-topic-%d", i))
	}
	if _, err := adm.CreateACLs(ctx, acls.Topics(names...)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateACLs(ctx, kadm.NewACLs().Topics("bench").ResourcePatternType(kadm.ACLPatternPrefixed).Allow("User:bob").Operations(kadm.OpWrite, kadm.OpRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateACLs(ctx, kadm.NewACLs().Clusters().Allow("User:bob").Operations(kadm.OpIdempotentWrite)); err != nil {
		t.Fatal(err)
	}
	if n := countACLs(t, adm); n < 1000 {
		t.Fatalf("%d ACLs, want at least 1000", n)
	}

	value := make([]byte, size)
	// cpu is the process's CPU time (client and broker share it): CPU
	// per byte moved is steadier on a shared machine than wall time.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var lastCPU time.Duration // CPU time of the last produce run
	produce := func(addrOpts []kgo.Opt, topic string) float64 {
		cl, err := kgo.NewClient(append(addrOpts, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.AllowAutoTopicCreation())...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil { // connect and create
			t.Fatal(err)
		}
		start, cpu0 := time.Now(), cpu()
		defer func() { lastCPU = cpu() - cpu0 }()
		for range records {
			cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		return float64(records*size) / time.Since(start).Seconds() / 1e6
	}
	consume := func(addrOpts []kgo.Opt, topic string) float64 {
		cl, err := kgo.NewClient(append(addrOpts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		start := time.Now()
		n := 0
		for n < records {
			fs := cl.PollFetches(ctx)
			n += len(fs.Records())
		}
		return float64(records*size) / time.Since(start).Seconds() / 1e6
	}
	plain := []kgo.Opt{kgo.SeedBrokers(b.ListenerAddr("PLAINTEXT"))}
	bobOpts := []kgo.Opt{kgo.SeedBrokers(az.ListenerAddr("SASL_PLAINTEXT")), kgo.SASL(scram.Auth{User: "bob", Pass: "bob-pw"}.AsSha256Mechanism())}
	adminOpts := []kgo.Opt{kgo.SeedBrokers(az.ListenerAddr("SASL_PLAINTEXT")), kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha256Mechanism())}
	// Each comparison alternates its two sides pairs times and reports the
	// median ratio: the machine is shared, and a neighbour's burst then
	// hits both sides of some pairs instead of one side of the figure.
	median := func(a, b func() float64) (float64, float64, float64) {
		var ratios, as, bs []float64
		for range pairs {
			x, y := a(), b()
			as, bs, ratios = append(as, x), append(bs, y), append(ratios, y/x)
		}
		slices.Sort(ratios)
		slices.Sort(as)
		slices.Sort(bs)
		return as[pairs/2], bs[pairs/2], ratios[pairs/2]
	}
	n := 0
	topic := func(prefix string) string { n++; return fmt.Sprintf("%s-%d", prefix, n) }
	for r := range rounds {
		var pt, st string
		pp, sp, pr := median(func() float64 { pt = topic("plain"); return produce(plain, pt) }, func() float64 { st = topic("sasl"); return produce(saslSSL, st) })
		pc, sc, cr := median(func() float64 { return consume(plain, pt) }, func() float64 { return consume(saslSSL, st) })
		// Authorizer: the super user skips the ACLs (the baseline), bob is
		// checked against 1,000 on every request.
		var suCPU, acCPU []float64
		su, ac, ar := median(func() float64 {
			name := topic("bench-su")
			if _, err := adm.CreateTopics(ctx, 1, 1, nil, name); err != nil {
				t.Fatal(err)
			}
			r := produce(adminOpts, name)
			suCPU = append(suCPU, lastCPU.Seconds())
			return r
		}, func() float64 {
			name := topic("bench-acl")
			if _, err := adm.CreateTopics(ctx, 1, 1, nil, name); err != nil {
				t.Fatal(err)
			}
			r := produce(bobOpts, name)
			acCPU = append(acCPU, lastCPU.Seconds())
			return r
		})
		slices.Sort(suCPU)
		slices.Sort(acCPU)
		t.Logf("round %d (medians of %d alternating pairs): produce plaintext %.0f MB/s, SASL_SSL %.0f MB/s (ratio %.0f%%); consume plaintext %.0f MB/s, SASL_SSL %.0f MB/s (%.0f%%); produce checked against 1,000 ACLs %.0f MB/s vs super user %.0f MB/s (%.1f%%), CPU per run %.3f s vs %.3f s (%.1f%%)",
			r, pairs, pp, sp, 100*pr, pc, sc, 100*cr, ac, su, 100*ar, acCPU[pairs/2], suCPU[pairs/2], 100*acCPU[pairs/2]/suCPU[pairs/2])
	}
}

func countACLs(t *testing.T, adm *kadm.Client) int {
	t.Helper()
	res, err := adm.DescribeACLs(context.Background(), kadm.NewACLs().AnyResource().Allow().AllowHosts().Deny().DenyHosts().Operations(kadm.OpAny).ResourcePatternType(kadm.ACLPatternAny))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range res {
		n += len(r.Described)
	}
	return n
}
