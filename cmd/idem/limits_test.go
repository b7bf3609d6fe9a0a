package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/verify"
)

// TestConnectionFloodCannotStarveTheLog is issue 9's file-descriptor case: a
// broker limited to 512 descriptors is flooded with 600 connections while a
// producer writes with acks=all into a topic whose segments roll every 64
// KiB. Connections may take at most half the descriptors, so every roll
// still gets its file and every record is acknowledged.
func TestConnectionFloodCannotStarveTheLog(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		testkit.Unavailable(t, "prlimit (util-linux)")
	}
	dataDir := t.TempDir()
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	serveChild(t, []string{prlimit, "--nofile=512:512"}, addr, adminAddr, "--data-dir", dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("rolls"), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("65536")}, "rolls"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The flood: connections that are opened and held.
	for range 600 {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		defer nc.Close()
	}
	val := make([]byte, 1024)
	failed := 0
	for i := range 5000 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(val[:0], "%04d%s", i, make([]byte, 1000))}).FirstErr(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 5000 acks=all writes failed under a connection flood", failed)
	}
}
