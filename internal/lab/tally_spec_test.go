package lab

// A scenario and a mode that exist only in the tests, to prove the specs
// carry everything the lab needs: adding them is this one file and a row of
// the table, and the rest of the package runs them without knowing them.
// The scenario's sink is a plain file; the mode's consumer is not a consumer
// group at all: it reads the partitions it assigns itself and keeps its
// positions in a file of its own.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	scenarioTally             = "tally"
	assignedPartitions   Mode = "assigned-partitions"
	tallyFile                 = "tally.jsonl"
	assignedPositionFile      = "positions.json"
)

func init() {
	registerScenario(&scenarioSpec{
		name:         scenarioTally,
		effectColumn: "DOUBLE TALLIES",
		twice:        "event tallied twice",
		atomic:       "positions and tallies",
		openSink:     func(r *run) (sink, error) { return tallySink{filepath.Join(r.dir, tallyFile)}, nil },
		apply: func(_ context.Context, w *worker, e Event, _ string) error {
			return appendLine(w.spec.Sink, map[string]any{"id": e.ID, "t": time.Now().UnixNano()})
		},
	})
	registerMode(&modeSpec{
		mode:     assignedPartitions,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{
			words:        func(*scenarioSpec) string { return "no acknowledged event lost; duplicates allowed" },
			mayDuplicate: true,
		},
		consume: consumeAssigned,
	})
	registry.table = append(registry.table, tableRow{scenarioTally, []Mode{AtLeastOnce, assignedPartitions}})
}

// appendLine appends one JSON line with a single write.
func appendLine(path string, v any) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(v)
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tallySink reads the tally file the workers append to.
type tallySink struct{ path string }

func (s tallySink) address() string     { return s.path }
func (tallySink) effected() (int, bool) { return 0, false }
func (tallySink) close()                {}

func (s tallySink) effects(context.Context, *run, *ModeResult) (map[string][]time.Time, error) {
	b, err := os.ReadFile(s.path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	effects := map[string][]time.Time{}
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			ID string `json:"id"`
			T  int64  `json:"t"`
		}
		if json.Unmarshal([]byte(line), &l) == nil {
			effects[l.ID] = append(effects[l.ID], time.Unix(0, l.T))
		}
	}
	return effects, nil
}

// consumeAssigned reads every partition of the input from the positions in
// its own file, applies each event, and then saves the position: an
// at-least-once consumer without a group, whose crash point is between the
// effect and the saved position.
func consumeAssigned(ctx context.Context, w *worker) error {
	path := filepath.Join(filepath.Dir(w.spec.Deliveries), assignedPositionFile)
	pos := map[int32]int64{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &pos)
	}
	from := map[int32]kgo.Offset{}
	if err := retry(ctx, func() error { return w.partitions(ctx, pos, from) }); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(w.clientOpts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{w.spec.Topic: from}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for !w.done() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollRecords(pctx, 100)
		cancel()
		for _, r := range fs.Records() {
			var e Event
			if json.Unmarshal(r.Value, &e) == nil {
				crashHere := w.delivered(r, e)
				if err := w.apply(ctx, e, ""); err != nil {
					return err
				}
				if crashHere {
					crash() // applied, position never saved: redelivered
				}
			}
			pos[r.Partition] = r.Offset + 1
			b, _ := json.Marshal(pos)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				return err
			}
			w.settled(r)
		}
	}
	return nil
}

// partitions lists the input's partitions and where to start reading each.
func (w *worker) partitions(ctx context.Context, pos map[int32]int64, from map[int32]kgo.Offset) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.spec.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, w.spec.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return err
	}
	ends.Each(func(o kadm.ListedOffset) {
		from[o.Partition] = kgo.NewOffset().At(pos[o.Partition])
		w.pos[o.Partition] = pos[o.Partition]
	})
	return nil
}

func TestRegistryRefusesDuplicatesAndLateRegistration(t *testing.T) {
	g := &specRegistry{modes: map[Mode]*modeSpec{}, scenarios: map[string]*scenarioSpec{}}
	m := &modeSpec{mode: "m", consume: consumeAssigned, promise: promiseSpec{words: func(*scenarioSpec) string { return "" }}}
	sc := &scenarioSpec{name: "s", effectColumn: "X"}
	g.addMode(m)
	g.addScenario(sc)
	mustPanic(t, "registered twice", func() { g.addMode(m) })
	mustPanic(t, "registered twice", func() { g.addScenario(sc) })
	mustPanic(t, "incomplete mode spec", func() { g.addMode(&modeSpec{mode: "n"}) })

	g.table = []tableRow{{"s", []Mode{"m"}}}
	mustPanic(t, "has no sink", g.seal) // the scenario cannot run a mode that needs a sink
	mustPanic(t, "registered after the registry was read", func() { g.addMode(&modeSpec{mode: "late"}) })
}

func TestRegistryTableMustMatchTheSpecs(t *testing.T) {
	for name, tbl := range map[string][]tableRow{
		"which is not registered":     {{"s", []Mode{"m", "ghost"}}},
		"is registered but in no row": {{"s", nil}},
	} {
		g := &specRegistry{table: tbl, modes: map[Mode]*modeSpec{}, scenarios: map[string]*scenarioSpec{}}
		g.addMode(&modeSpec{mode: "m", consume: consumeAssigned, promise: promiseSpec{words: func(*scenarioSpec) string { return "" }}})
		g.addScenario(&scenarioSpec{name: "s", effectColumn: "X", openSink: func(*run) (sink, error) { return nil, nil },
			apply: func(context.Context, *worker, Event, string) error { return nil }})
		mustPanic(t, name, g.seal)
	}
}

func TestPromiseJudgeFollowsWhatTheModeAllows(t *testing.T) {
	for _, c := range []struct {
		mode Mode
		r    ModeResult
		kept bool
	}{
		{AtMostOnce, ModeResult{Lost: 3}, true},
		{AtMostOnce, ModeResult{DupEffects: 1}, false},
		{AtLeastOnce, ModeResult{DupEffects: 5, Drift: 500}, true},
		{AtLeastOnce, ModeResult{Lost: 1}, false},
		{OffsetsInDB, ModeResult{Drift: 1}, false},
		{ExactlyOnceTxn, ModeResult{DupEffects: 1}, false},
		{IdempotentConsumer, ModeResult{}, true},
	} {
		spec, _ := lookupMode(c.mode)
		if got := spec.promise.kept(c.r); got != c.kept {
			t.Errorf("%s %+v: kept=%t, want %t", c.mode, c.r, got, c.kept)
		}
	}
}

func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if r := recover(); r == nil || !strings.Contains(r.(string), want) {
			t.Errorf("panic %v, want one containing %q", r, want)
		}
	}()
	f()
}
