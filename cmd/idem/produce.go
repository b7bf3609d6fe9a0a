package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

type produceFlags struct {
	keyDelim  string
	headers   []string
	acks      string
	partition int32
	timeout   time.Duration
}

func newProduceCmd() *cobra.Command {
	var f produceFlags
	var client *clientFlags
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce one record per line of standard input (kcat -P / rpk topic produce)",
		Long: `Produce one record per line read from standard input.

With -K, each line is split at the first occurrence of the delimiter into key
and value (kcat -K). -H name=value adds a header to every record. The default
--acks all waits until the broker has fsynced each record and uses the
idempotent producer, so a retry after a lost answer is never a duplicate.
The command exits non-zero if any record was not acknowledged.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runProduce(ctx, cmd, client, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.keyDelim, "key-delimiter", "K", "", "split each line into key and value at the first occurrence of this string")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "header name=value added to every record; repeatable")
	fl.StringVar(&f.acks, "acks", "all", "all (-1): after fsync; 1: after write; 0: no answer")
	fl.Int32VarP(&f.partition, "partition", "p", -1, "produce to this partition (default: hash of the key, or sticky without key)")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "fail a record not acknowledged in this time (0: retry forever); an idempotent producer fails only records it can prove were not written")
	client = addClientFlags(cmd)
	return cmd
}

func parseAcks(s string) (kgo.Acks, bool, error) {
	switch s {
	case "all", "-1":
		return kgo.AllISRAcks(), true, nil
	case "1":
		return kgo.LeaderAck(), false, nil
	case "0":
		return kgo.NoAck(), false, nil
	}
	return kgo.Acks{}, false, fmt.Errorf("--acks %q: want all, -1, 1 or 0", s)
}

func parseHeaders(hs []string) ([]kgo.RecordHeader, error) {
	var out []kgo.RecordHeader
	for _, h := range hs {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-H %q: want name=value", h)
		}
		out = append(out, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	return out, nil
}

func runProduce(ctx context.Context, cmd *cobra.Command, client *clientFlags, topic string, f produceFlags) error {
	acks, idempotent, err := parseAcks(f.acks)
	if err != nil {
		return err
	}
	headers, err := parseHeaders(f.headers)
	if err != nil {
		return err
	}
	opts := []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(acks),
		// Let the broker decide (auto.create.topics.enable), like kcat does.
		kgo.AllowAutoTopicCreation(),
	}
	if !idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if f.timeout > 0 {
		// Without it a producer facing a broker that is down retries for
		// ever, and a person at a terminal sees a hung command.
		opts = append(opts, kgo.RecordDeliveryTimeout(f.timeout))
	}
	if f.partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := client.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	var (
		mu       sync.Mutex
		failed   int
		firstErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if failed++; firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	produced, err := produceLines(ctx, cmd.InOrStdin(), f.keyDelim, func(key, value []byte) {
		r := &kgo.Record{Key: key, Value: value, Headers: headers, Partition: f.partition}
		cl.Produce(ctx, r, promise)
	})
	if err == nil {
		err = cl.Flush(ctx)
	}
	if errors.Is(err, context.Canceled) {
		// Records already sent may still be written: say so, do not guess.
		return fmt.Errorf("interrupted after %d lines; records not yet acknowledged may or may not have been written", produced)
	}
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if failed > 0 {
		return fmt.Errorf("%d of %d records not acknowledged; first error: %w", failed, produced, firstErr)
	}
	return nil
}

// produceLines calls send for each line of r, split into key and value at
// the first keyDelim if it is set. Lines may be of any length; a trailing
// "\r" is kept, as kcat keeps it.
func produceLines(ctx context.Context, r io.Reader, keyDelim string, send func(key, value []byte)) (int, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		} else if err == io.EOF && len(line) == 0 {
			return n, nil
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if err != nil && err != io.EOF {
			return n, err
		}
		var key []byte
		if keyDelim != "" {
			if k, v, ok := bytes.Cut(line, []byte(keyDelim)); ok {
				key, line = k, v
			}
		}
		send(key, line)
		n++
		if err == io.EOF {
			return n, nil
		}
	}
}
