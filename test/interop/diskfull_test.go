package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/internal/testkit"
)

// TestLibrdkafkaRetriesThroughAFullDisk is issue 9's disk-full case with the
// client that exposed it: the broker's data directory is a 48 MiB tmpfs that
// fills up while librdkafka produces 20 MiB with acks=all. The broker must
// answer a retriable error (librdkafka failed 27,792 of 60,000 messages at
// once when it answered UNKNOWN_SERVER_ERROR), so that once space is freed
// every message is delivered and none fails.
func TestLibrdkafkaRetriesThroughAFullDisk(t *testing.T) {
	py := requireConfluentKafka(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=48m"); err != nil {
		testkit.Unavailable(t, "mounting a tmpfs for the full disk (needs root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	data := filepath.Join(dir, "data")
	b := startBroker(t, broker.WithDataDir(data), broker.WithTopics("full"), broker.WithProperty("idem.disk.reserve.bytes", "1048576"))

	// Leave about 4 MiB free.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	unix.Statfs(dir, &st)
	free := int64(st.Bavail) * st.Bsize
	if _, err := f.Write(make([]byte, free-4<<20)); err != nil {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	f.Close()

	const n = 20000
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/diskfull_produce.py", b.Addr(), "full", fmt.Sprint(n))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the broker reports the disk full, keep it full for a few
	// seconds of retries, then free the space.
	deadline := time.Now().Add(60 * time.Second)
	for !diskFull(t, b.AdminAddr()) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the disk never filled up; producer stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("producer: %v\nstderr:\n%s", err, stderr.String())
	}
	var res struct {
		Delivered, Failed int
		Errors            map[string]int
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("script output is not JSON: %v\n%s", err, stdout.String())
	}
	t.Logf("librdkafka through a full disk: %+v", res)
	if res.Failed != 0 || res.Delivered != n {
		t.Fatalf("librdkafka delivered %d and failed %d of %d messages (%v)", res.Delivered, res.Failed, n, res.Errors)
	}
	if got := len(readAll(t, b, "full", n)); got < n {
		t.Fatalf("read back %d of %d", got, n)
	}
}

func diskFull(t *testing.T, adminAddr string) bool {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(body), "\nidem_disk_full 1")
}
