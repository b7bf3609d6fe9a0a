package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

const testRoleEnv = "IDEM_TESTKIT_TEST_ROLE"

func TestMain(m *testing.M) {
	Main(m, Role{Env: testRoleEnv, Run: func(spec string) int {
		fmt.Print("role ran with " + spec)
		return 7
	}})
}

func TestMainRunsTheRoleNamedInTheEnvironmentInsteadOfTheTests(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testRoleEnv+"=spec-1")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("child exited with %v, want code 7", err)
	}
	if string(out) != "role ran with spec-1" {
		t.Fatalf("child printed %q", out)
	}
}

func TestClockStandsStillUntilAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(start)
	time.Sleep(time.Millisecond)
	if !c.Now().Equal(start) {
		t.Fatalf("clock moved by itself: %v", c.Now())
	}
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("advanced by %v, want 90s", got)
	}
}

func TestInCIReadsTheCIVariable(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true, "woodpecker": true} {
		t.Setenv("CI", v)
		if InCI() != want {
			t.Errorf("CI=%q: InCI() = %t, want %t", v, !want, want)
		}
	}
}

// fakeTB records how a helper ended a test; Fatal and Skip end the calling
// goroutine as the testing package's do. It implements only the methods
// the helpers under test call.
type fakeTB struct {
	testing.TB
	failed, skipped string
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Fatal(args ...any)            { f.failed = fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeTB) Fatalf(s string, args ...any) { f.failed = fmt.Sprintf(s, args...); runtime.Goexit() }
func (f *fakeTB) Skip(args ...any)             { f.skipped = fmt.Sprint(args...); runtime.Goexit() }

// run calls fn with a fake TB on its own goroutine and returns how it ended.
func run(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestUnavailableFailsUnderCIAndSkipsElsewhere(t *testing.T) {
	t.Setenv("CI", "true")
	if f := run(func(tb testing.TB) { Unavailable(tb, "no %s", "kcat") }); f.failed != "no kcat" || f.skipped != "" {
		t.Fatalf("under CI: failed %q, skipped %q", f.failed, f.skipped)
	}
	t.Setenv("CI", "")
	if f := run(func(tb testing.TB) { Unavailable(tb, "no %s", "kcat") }); f.skipped != "no kcat" || f.failed != "" {
		t.Fatalf("outside CI: failed %q, skipped %q", f.failed, f.skipped)
	}
}

func TestRequireToolFindsAProgramOnThePath(t *testing.T) {
	if p := RequireTool(t, "go", "install Go"); !strings.HasSuffix(p, "go") {
		t.Fatalf("RequireTool(go) = %q", p)
	}
	t.Setenv("CI", "")
	f := run(func(tb testing.TB) { RequireTool(tb, "idem-no-such-program", "install nothing") })
	if !strings.Contains(f.skipped, "idem-no-such-program not found (install nothing)") {
		t.Fatalf("missing program: skipped %q, failed %q", f.skipped, f.failed)
	}
}

func TestEventuallyReturnsOnceTheConditionHoldsAndFailsOtherwise(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, "the third check", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("checked %d times", n)
	}
	f := run(func(tb testing.TB) { Eventually(tb, 30*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(f.failed, "waiting for never") {
		t.Fatalf("failed with %q", f.failed)
	}
}

func TestContextEndsWithItsTimeout(t *testing.T) {
	ctx := Context(t, time.Millisecond)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context still open after 5s")
	}
}

func TestBuildBinaryBuildsARunnableExecutable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the idem command")
	}
	bin := BuildBinary(t, "./cmd/idem")
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "idem ") {
		t.Fatalf("%s version: %q, %v", bin, out, err)
	}
}

func TestSoakPicksTheSoakSizeOnlyWhenAsked(t *testing.T) {
	for v, want := range map[string]int{"": 1, "0": 1, "1": 10} {
		t.Setenv(SoakEnv, v)
		if got := Soak(1, 10); got != want {
			t.Errorf("%s=%q: Soak(1, 10) = %d", SoakEnv, v, got)
		}
	}
}
