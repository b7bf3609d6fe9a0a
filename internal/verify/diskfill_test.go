package verify

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/idem-dev/idem/internal/testkit"
)

// A Filler takes all of a small file system's space, so that the next write
// of even one page fails with ENOSPC, and gives it all back.
func TestFillerFillsUntilENOSPCAndFreesAgain(t *testing.T) {
	dir := testkit.Tmpfs(t, 4<<20)
	write := func(name string, n int) error {
		return os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644)
	}
	if err := write("data", 100<<10); err != nil {
		t.Fatal(err)
	}
	f := &Filler{Dir: dir}
	if what, err := f.Free(); err != nil { // nothing to free yet
		t.Fatalf("Free before Fill: %s, %v", what, err)
	}
	for range 2 {
		what, err := f.Fill()
		if err != nil {
			t.Fatal(err)
		}
		t.Log(what)
		if err := write("more", 4<<10); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("a page written after %q: %v, want ENOSPC", what, err)
		}
		if what, err = f.Free(); err != nil {
			t.Fatal(err)
		}
		t.Log(what)
		if err := write("more", 1<<20); err != nil {
			t.Fatalf("1 MiB written after the free: %v", err)
		}
		if err := os.Remove(filepath.Join(dir, "more")); err != nil {
			t.Fatal(err)
		}
	}
}
