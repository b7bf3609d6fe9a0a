package benchmark

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"
)

// The partitions scenario: how produce throughput, memory, open files and
// startup grow with the number of partitions the broker holds.

// PartitionsRow is one partition count.
type PartitionsRow struct {
	Partitions int `json:"partitions"`
	Topics     int `json:"topics"`
	// CreateSeconds is how long creating the topics took.
	CreateSeconds float64 `json:"create_seconds"`
	Throughput
	// BrokerCores and BenchCores are the CPU the broker and the bench's
	// producer used while producing, in cores (CPU seconds per second):
	// when they add up to the machine's cores, the figure is the
	// machine's, not the broker's alone.
	BrokerCores float64 `json:"broker_cores"`
	BenchCores  float64 `json:"bench_cores"`
	RSSBytes    int64   `json:"rss_bytes"` // after producing
	FDs         int     `json:"fds"`       // after producing
	// StopMs is SIGTERM → exit of the broker that produced: it fsyncs what
	// is not yet durable and records every partition's final state.
	StopMs float64 `json:"stop_ms"`
	// StartCleanMs and StartKilledMs are exec → first Metadata answer,
	// after a SIGTERM shutdown and after kill -9.
	StartCleanMs  float64 `json:"start_clean_ms"`
	StartKilledMs float64 `json:"start_killed_ms"`
	// ReadyCleanMs and ReadyKilledMs are exec → every partition answering
	// ListOffsets: the broker loads partitions after it starts serving.
	ReadyCleanMs  float64 `json:"ready_clean_ms"`
	ReadyKilledMs float64 `json:"ready_killed_ms"`
	// RecordsAfterRestart is what the topics held after the kill -9
	// restart: every acknowledged record.
	RecordsAfterRestart int64 `json:"records_after_restart"`
}

// PartitionsReport is the partitions scenario's result.
type PartitionsReport struct {
	RecordBytes int             `json:"record_bytes"`
	Rows        []PartitionsRow `json:"rows"`
}

// partitionLayout spreads total partitions over topics the way the issue
// asks: one topic up to 1,000 partitions, 100 topics beyond.
func partitionLayout(total int) (topics int, perTopic int32) {
	if total <= 1000 {
		return 1, int32(total)
	}
	return 100, int32((total + 99) / 100)
}

// RunPartitions measures each of cfg.PartitionCounts on a fresh broker
// child: produce cfg.PartitionRecords 100-byte records round-robin over
// every partition (idempotent, acks=all), read RSS and open files, then
// time a restart after SIGTERM and one after kill -9.
func RunPartitions(ctx context.Context, cfg ScaleConfig) (*PartitionsReport, error) {
	rep := &PartitionsReport{RecordBytes: 100}
	value := [][]byte{make([]byte, rep.RecordBytes)}
	for _, total := range cfg.PartitionCounts {
		if total <= 0 {
			return nil, fmt.Errorf("partition count %d: want at least 1", total)
		}
		row, err := runPartitionCount(ctx, cfg, total, value)
		if err != nil {
			return nil, fmt.Errorf("%d partitions: %w", total, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

func runPartitionCount(ctx context.Context, cfg ScaleConfig, total int, value [][]byte) (PartitionsRow, error) {
	nTopics, perTopic := partitionLayout(total)
	row := PartitionsRow{Partitions: nTopics * int(perTopic), Topics: nTopics}
	dir, remove, err := scaleDataDir(cfg, "partitions")
	if err != nil {
		return row, err
	}
	defer remove()
	sp, err := newSpawner(cfg)
	if err != nil {
		return row, err
	}
	progressf(cfg.Progress, "partitions %d: start broker, create %d topic(s)", row.Partitions, nTopics)
	child, _, err := sp.start(ctx, dir)
	if err != nil {
		return row, err
	}
	defer func() { child.kill() }() // the child of the moment; a no-op once it has stopped
	topics := make([]string, nTopics)
	for i := range topics {
		topics[i] = "scale-" + strconv.Itoa(i)
	}
	begin := time.Now()
	if err := child.createTopics(ctx, perTopic, topics...); err != nil {
		return row, err
	}
	row.CreateSeconds = time.Since(begin).Seconds()
	progressf(cfg.Progress, "partitions %d: produce %d records", row.Partitions, cfg.PartitionRecords)
	before, err := child.stats()
	if err != nil {
		return row, err
	}
	selfBefore, err := selfCPU()
	if err != nil {
		return row, err
	}
	if row.Throughput, err = child.produceSpread(ctx, topics, cfg.PartitionRecords, value); err != nil {
		return row, err
	}
	row.Name = fmt.Sprintf("%d partitions", row.Partitions)
	st, err := child.stats()
	if err != nil {
		return row, err
	}
	selfAfter, err := selfCPU()
	if err != nil {
		return row, err
	}
	if row.Seconds > 0 {
		row.BrokerCores = (st.CPU - before.CPU) / row.Seconds
		row.BenchCores = (selfAfter - selfBefore) / row.Seconds
	}
	row.RSSBytes, row.FDs = st.RSS, st.FDs

	progressf(cfg.Progress, "partitions %d: restart after SIGTERM, then after kill -9", row.Partitions)
	stopCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	stopping := time.Now()
	if err := child.stop(stopCtx); err != nil {
		return row, err
	}
	row.StopMs = float64(time.Since(stopping)) / 1e6
	var took time.Duration
	if child, took, err = restart(ctx, sp, dir, child); err != nil {
		return row, err
	}
	row.StartCleanMs = float64(took) / 1e6
	if took, err = child.awaitPartitions(ctx, row.Partitions, topics...); err != nil {
		return row, err
	}
	row.ReadyCleanMs = float64(took) / 1e6
	child.kill()
	if child, took, err = restart(ctx, sp, dir, child); err != nil {
		return row, err
	}
	row.StartKilledMs = float64(took) / 1e6
	if took, err = child.awaitPartitions(ctx, row.Partitions, topics...); err != nil {
		return row, err
	}
	row.ReadyKilledMs = float64(took) / 1e6
	if row.RecordsAfterRestart, err = child.endOffsets(ctx, topics...); err != nil {
		return row, err
	}
	return row, child.stop(stopCtx)
}

// Format prints the table and the goals beside the figures.
func (r *PartitionsReport) Format(w io.Writer) {
	fmt.Fprintf(w, "partitions: %d records of %d bytes, idempotent acks=all, round-robin over every partition\n", r.records(), r.RecordBytes)
	fmt.Fprintln(w, "cpu = cores the broker / the bench's producer used while producing; stop = SIGTERM → exit; serve = exec → Metadata answered; ready = exec → every partition answers ListOffsets; term = after SIGTERM, kill = after kill -9")
	fmt.Fprintf(w, "%10s %6s %8s %8s %6s %11s %8s %6s %8s %11s %11s %11s %11s\n", "partitions", "topics", "create", "msgs/s", "MB/s", "cpu b/bench", "RSS MiB", "fds",
		"stop", "serve(term)", "ready(term)", "serve(kill)", "ready(kill)")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%10d %6d %7.2fs %8.0f %6.1f %5.2f/%5.2f %8.1f %6d %6.0fms %9.0fms %9.0fms %9.0fms %9.0fms\n", row.Partitions, row.Topics, row.CreateSeconds,
			row.MsgsPerS, row.MBPerS, row.BrokerCores, row.BenchCores, mib(row.RSSBytes), row.FDs, row.StopMs, row.StartCleanMs, row.ReadyCleanMs, row.StartKilledMs, row.ReadyKilledMs)
	}
	fmt.Fprintln(w, "goals:")
	if row, ok := r.row(10000); ok {
		start := max(row.ReadyCleanMs, row.ReadyKilledMs)
		fmt.Fprintf(w, "  10,000 partitions start in ≤5 s: %.2f s (every partition ready, slower of SIGTERM/kill -9) — %s\n", start/1000, metGoal(start <= 5000))
		fmt.Fprintf(w, "  10,000 partitions under 1 GiB RSS: %.0f MiB — %s\n", mib(row.RSSBytes), metGoal(row.RSSBytes < 1<<30))
	} else {
		fmt.Fprintln(w, "  10,000 partitions start ≤5 s, <1 GiB RSS: not measured (no 10000 in --partition-counts)")
	}
	base, okBase := r.row(4)
	big, okBig := r.row(1000)
	if okBase && okBig && base.MsgsPerS > 0 {
		ratio := big.MsgsPerS / base.MsgsPerS
		fmt.Fprintf(w, "  throughput at 1,000 partitions ≥80%% of 4: %.0f%% — %s\n", ratio*100, metGoal(ratio >= 0.8))
	} else {
		fmt.Fprintln(w, "  throughput at 1,000 partitions ≥80% of 4: not measured (needs 4 and 1000 in --partition-counts)")
	}
}

func (r *PartitionsReport) records() int {
	if len(r.Rows) == 0 {
		return 0
	}
	return r.Rows[0].Records
}

func (r *PartitionsReport) row(partitions int) (PartitionsRow, bool) {
	for _, row := range r.Rows {
		if row.Partitions == partitions {
			return row, true
		}
	}
	return PartitionsRow{}, false
}

// Charts are throughput, memory, open files and startup by partition count.
func (r *PartitionsReport) Charts() []Chart {
	cats := make([]string, len(r.Rows))
	var tput, rss, fds, term, kill []float64
	for i, row := range r.Rows {
		cats[i] = strconv.Itoa(row.Partitions)
		tput = append(tput, row.MsgsPerS)
		rss = append(rss, mib(row.RSSBytes))
		fds = append(fds, float64(row.FDs))
		term = append(term, row.ReadyCleanMs/1000)
		kill = append(kill, row.ReadyKilledMs/1000)
	}
	return []Chart{
		{File: "partitions-throughput.svg", Title: "Produce throughput by partition count (idempotent, acks=all)",
			XLabel: "partitions", YLabel: "records/s", Categories: cats, Series: []Series{{"records/s", tput}}},
		{File: "partitions-rss.svg", Title: "Broker RSS by partition count (after producing)",
			XLabel: "partitions", YLabel: "MiB", Categories: cats, Series: []Series{{"RSS", rss}}},
		{File: "partitions-fds.svg", Title: "Broker open file descriptors by partition count",
			XLabel: "partitions", YLabel: "open files", Categories: cats, Series: []Series{{"open fds", fds}}},
		{File: "partitions-startup.svg", Title: "Broker startup (exec to every partition served) by partition count",
			XLabel: "partitions", YLabel: "seconds", Categories: cats, ValueDecimals: 2,
			Series: []Series{{"after SIGTERM", term}, {"after kill -9", kill}}},
	}
}
