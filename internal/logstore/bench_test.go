package logstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Each storage benchmark runs beside a baseline that does the least the
// operating system allows for the same work (plain writes; write+fdatasync),
// so the figures to compare are ratios measured in the same run:
//
//	go test ./internal/logstore -run '^$' -bench . -benchtime 2s
var benchSizes = []int{16 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func benchLog(b *testing.B) *Log {
	b.Helper()
	l, err := Open(OSFS(), b.TempDir(), Config{Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAppend measures appends that return after write(2) (acks=1).
func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			l := benchLog(b)
			batch := testBatch(100, time.Now().UnixMilli(), make([]byte, size-BatchHeaderSize))
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBaselineWrite is the plain loop of file writes Append is held to.
func BenchmarkBaselineWrite(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendDurable measures acks=all appends from concurrent
// appenders; group commit lets them share fsyncs.
func BenchmarkAppendDurable(b *testing.B) {
	for _, size := range benchSizes {
		for _, appenders := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/appenders=%d", sizeName(size), appenders), func(b *testing.B) {
				l := benchLog(b)
				b.SetBytes(int64(size))
				work := make(chan struct{}, appenders)
				var wg sync.WaitGroup
				start := time.Now()
				for range appenders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						batch := testBatch(100, time.Now().UnixMilli(), make([]byte, size-BatchHeaderSize))
						for range work {
							if _, err := l.AppendDurable(context.Background(), batch); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				for b.Loop() {
					work <- struct{}{}
				}
				close(work)
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkBaselineWriteFdatasync is one write and one fdatasync per
// batch: what a broker without group commit can do at best.
func BenchmarkBaselineWriteFdatasync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			start := time.Now()
			for b.Loop() {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fsyncs/s")
		})
	}
}

// BenchmarkRead measures fetch-style reads of 1 MiB from the page cache,
// CRC checks included.
func BenchmarkRead(b *testing.B) {
	l := benchLog(b)
	batch := testBatch(100, 1, make([]byte, 16<<10-BatchHeaderSize))
	const total = 64 << 20
	for range total / len(batch) {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := l.WaitDurable(ctx, l.EndOffset()); err != nil {
		b.Fatal(err)
	}
	end := l.EndOffset()
	b.ResetTimer()
	var bytesRead int64
	off := int64(0)
	for b.Loop() {
		out, err := l.Read(off, 1<<20, end)
		if err != nil {
			b.Fatal(err)
		}
		bytesRead += int64(len(out))
		off += int64(len(out)/len(batch)) * 100
		if off >= end {
			off = 0
		}
	}
	b.SetBytes(bytesRead / int64(max(b.N, 1)))
}

// BenchmarkAppendRatio interleaves one Append and one plain file write of
// the same size per iteration and reports both bandwidths and their ratio.
// Run one after the other, the two benchmarks above see different page-cache
// and writeback states (on a shared 2-core VM their figures swing 5×);
// interleaved, both see the same.
func BenchmarkAppendRatio(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			l := benchLog(b)
			batch := testBatch(100, time.Now().UnixMilli(), make([]byte, size-BatchHeaderSize))
			f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, size)
			var appendT, writeT time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := l.Append(batch); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				appendT += t1.Sub(t0)
				writeT += time.Since(t1)
			}
			mb := float64(b.N) * float64(size) / 1e6
			b.ReportMetric(mb/appendT.Seconds(), "append-MB/s")
			b.ReportMetric(mb/writeT.Seconds(), "write-MB/s")
			b.ReportMetric(writeT.Seconds()/appendT.Seconds(), "append/write")
		})
	}
}
