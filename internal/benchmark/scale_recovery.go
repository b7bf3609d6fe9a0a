package benchmark

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The recovery scenario: how long the broker takes to serve again as its
// log grows, after kill -9 (it must check what it finds on disk) and after
// a clean SIGTERM shutdown.

// RecoveryRow is one log size.
type RecoveryRow struct {
	LogBytes    int64   `json:"log_bytes"` // record bytes produced so far
	DiskBytes   int64   `json:"disk_bytes"`
	Records     int64   `json:"records"`
	WriteMBPerS float64 `json:"write_mb_per_s"` // of the bytes added for this row
	// Start is exec → Metadata answered, Ready exec → every partition
	// answering ListOffsets (partitions load after the broker serves).
	StartKilledMs float64 `json:"start_killed_ms"`
	ReadyKilledMs float64 `json:"ready_killed_ms"`
	StartCleanMs  float64 `json:"start_clean_ms"`
	ReadyCleanMs  float64 `json:"ready_clean_ms"`
	// RecordsAfterRestart is what the topic held after both restarts: it
	// must equal Records.
	RecordsAfterRestart int64 `json:"records_after_restart"`
}

// RecoveryReport is the recovery scenario's result.
type RecoveryReport struct {
	Partitions  int           `json:"partitions"`
	RecordBytes int           `json:"record_bytes"`
	Rows        []RecoveryRow `json:"rows"`
}

const (
	recoveryPartitions  = 4
	recoveryRecordBytes = 1024
)

// RunRecovery grows one topic's log to each of cfg.RecoverySizes in turn
// (1-KiB incompressible records, idempotent acks=all), and at each size
// kills the broker with SIGKILL and times its start, then stops it with
// SIGTERM and times that start too.
func RunRecovery(ctx context.Context, cfg ScaleConfig) (*RecoveryReport, error) {
	var prev int64
	for _, size := range cfg.RecoverySizes {
		if size <= prev {
			return nil, fmt.Errorf("log sizes must be positive and ascend: %d MiB after %d MiB", size>>20, prev>>20)
		}
		prev = size
	}
	rep := &RecoveryReport{Partitions: recoveryPartitions, RecordBytes: recoveryRecordBytes}
	dir, remove, err := scaleDataDir(cfg, "recovery")
	if err != nil {
		return nil, err
	}
	defer remove()
	sp, err := newSpawner(cfg)
	if err != nil {
		return nil, err
	}
	child, _, err := sp.start(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer func() { child.kill() }() // the child of the moment; a no-op once it has stopped
	const topic = "recovery"
	if err := child.createTopics(ctx, recoveryPartitions, topic); err != nil {
		return nil, err
	}
	// Random values: a compressed or deduplicated file system must not
	// make the log smaller than it says.
	values := make([][]byte, 256)
	rng := rand.New(rand.NewPCG(17, 17))
	for i := range values {
		values[i] = make([]byte, recoveryRecordBytes)
		for j := range values[i] {
			values[i][j] = byte(rng.Uint32())
		}
	}
	var written, records int64
	for _, size := range cfg.RecoverySizes {
		n := int((size - written + recoveryRecordBytes - 1) / recoveryRecordBytes)
		progressf(cfg.Progress, "recovery: write %d MiB more (%d records)", (size-written)>>20, n)
		tp, err := child.produceSpread(ctx, []string{topic}, n, values, kgo.ProducerBatchCompression(kgo.NoCompression()))
		if err != nil {
			return nil, err
		}
		written += tp.Bytes
		records += int64(n)
		row := RecoveryRow{LogBytes: written, Records: records, WriteMBPerS: tp.MBPerS}

		progressf(cfg.Progress, "recovery %d MiB: kill -9 and restart, SIGTERM and restart", written>>20)
		child.kill()
		var took time.Duration
		if child, took, err = restart(ctx, sp, dir, child); err != nil {
			return nil, err
		}
		row.StartKilledMs = float64(took) / 1e6
		if took, err = child.awaitPartitions(ctx, recoveryPartitions, topic); err != nil {
			return nil, err
		}
		row.ReadyKilledMs = float64(took) / 1e6
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err = child.stop(stopCtx)
		cancel()
		if err != nil {
			return nil, err
		}
		row.DiskBytes = dirBytes(dir)
		if child, took, err = restart(ctx, sp, dir, child); err != nil {
			return nil, err
		}
		row.StartCleanMs = float64(took) / 1e6
		if took, err = child.awaitPartitions(ctx, recoveryPartitions, topic); err != nil {
			return nil, err
		}
		row.ReadyCleanMs = float64(took) / 1e6
		if row.RecordsAfterRestart, err = child.endOffsets(ctx, topic); err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, row)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return rep, child.stop(stopCtx)
}

// Format prints one line per log size.
func (r *RecoveryReport) Format(w io.Writer) {
	fmt.Fprintf(w, "recovery: one topic, %d partitions, %d-byte records\n", r.Partitions, r.RecordBytes)
	fmt.Fprintln(w, "serve = exec → Metadata answered; ready = exec → every partition answers ListOffsets; recovered = records held after both restarts")
	fmt.Fprintf(w, "%8s %9s %9s %10s %11s %11s %11s %11s %10s\n", "log MiB", "disk MiB", "records", "write MB/s",
		"serve(kill)", "ready(kill)", "serve(term)", "ready(term)", "recovered")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "%8.0f %9.0f %9d %10.1f %9.0fms %9.0fms %9.0fms %9.0fms %10d\n", mib(row.LogBytes), mib(row.DiskBytes), row.Records,
			row.WriteMBPerS, row.StartKilledMs, row.ReadyKilledMs, row.StartCleanMs, row.ReadyCleanMs, row.RecordsAfterRestart)
	}
}

// Charts is startup time by log size.
func (r *RecoveryReport) Charts() []Chart {
	var cats []string
	var kill, term []float64
	for _, row := range r.Rows {
		cats = append(cats, fmt.Sprintf("%.0f MiB", mib(row.LogBytes)))
		kill = append(kill, row.ReadyKilledMs/1000)
		term = append(term, row.ReadyCleanMs/1000)
	}
	return []Chart{{File: "recovery-startup.svg", Title: "Broker startup by log size (exec to every partition served)",
		XLabel: "log size", YLabel: "seconds", Categories: cats, ValueDecimals: 2,
		Series: []Series{{"after kill -9", kill}, {"after SIGTERM", term}}}}
}
