package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type consumeFlags struct {
	offset         string
	at             string
	group          string
	partitions     []int32
	count          int
	format         string
	readCommitted  bool
	isolationLevel string
	exitAtEnd      bool
}

func newConsumeCmd() *cobra.Command {
	var f consumeFlags
	var client *clientFlags
	cmd := &cobra.Command{
		Use:   "consume TOPIC...",
		Short: "Consume records and print them (kcat -C / rpk topic consume)",
		Long: `Consume records from one or more topics and print each with a kcat-style format.

Without -g, partitions are read directly from the offset given by -o or --time;
with -e the command exits once it has printed everything that existed when it
started. With -g it joins a consumer group, starts from the group's committed
offsets (-o applies only where the group has none) and commits what it printed.

Offsets (-o): beginning|start, end, N (exact offset), +N (N after the start),
-N (N before the end), s@MILLIS (first record at or after a timestamp).

Format (-f) codes, as kcat: %t topic, %p partition, %o offset, %T timestamp ms,
%k key, %K key length, %s value, %S value length, %h headers (name=value,...),
%% percent; escapes \n \r \t \\.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runConsume(ctx, cmd, client, topics, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.offset, "offset", "o", "start", "where to start: beginning|start, end, N, +N, -N, s@MILLIS")
	fl.StringVar(&f.at, "time", "", "start at the first record at or after this time (RFC 3339 or Unix milliseconds)")
	fl.StringVarP(&f.group, "group", "g", "", "consume as a member of this consumer group and commit offsets")
	fl.Int32SliceVarP(&f.partitions, "partitions", "p", nil, "only these partitions (not with -g)")
	fl.IntVarP(&f.count, "num", "n", 0, "exit after this many records (0: no limit)")
	fl.StringVarP(&f.format, "format", "f", `%s\n`, "output format (kcat codes, see above)")
	fl.BoolVar(&f.readCommitted, "read-committed", false, "read only committed transactional records (same as --isolation-level read_committed)")
	fl.StringVar(&f.isolationLevel, "isolation-level", "read_uncommitted", "read_uncommitted or read_committed")
	fl.BoolVarP(&f.exitAtEnd, "exit", "e", false, "exit at the end of the partitions as they were at start (not with -g)")
	client = addClientFlags(cmd)
	return cmd
}

// startOffset is a parsed -o / --time.
type startOffset struct {
	kind  byte // 's' start, 'e' end, '=' exact, '+' after start, '-' before end, 't' time
	value int64
}

func parseStartOffset(o, at string) (startOffset, error) {
	if at != "" {
		if ms, err := strconv.ParseInt(at, 10, 64); err == nil {
			return startOffset{'t', ms}, nil
		}
		tm, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return startOffset{}, fmt.Errorf("--time %q: want RFC 3339 (2026-11-25T10:00:00Z) or Unix milliseconds", at)
		}
		return startOffset{'t', tm.UnixMilli()}, nil
	}
	switch o {
	case "beginning", "start", "oldest":
		return startOffset{kind: 's'}, nil
	case "end", "newest":
		return startOffset{kind: 'e'}, nil
	}
	bad := fmt.Errorf("-o %q: want beginning|start, end, N, +N, -N or s@MILLIS", o)
	if ms, ok := strings.CutPrefix(o, "s@"); ok {
		v, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return startOffset{}, bad
		}
		return startOffset{'t', v}, nil
	}
	kind := byte('=')
	if o != "" && (o[0] == '+' || o[0] == '-') {
		kind = o[0]
		o = o[1:]
	}
	v, err := strconv.ParseInt(o, 10, 64)
	if err != nil || v < 0 {
		return startOffset{}, bad
	}
	return startOffset{kind, v}, nil
}

// kgoOffset is the offset for a group's partitions that have no commit.
func (s startOffset) kgoOffset() kgo.Offset {
	switch s.kind {
	case 'e':
		return kgo.NewOffset().AtEnd()
	case '=':
		return kgo.NewOffset().At(s.value)
	case '+':
		return kgo.NewOffset().AtStart().Relative(s.value)
	case '-':
		return kgo.NewOffset().AtEnd().Relative(-s.value)
	case 't':
		return kgo.NewOffset().AfterMilli(s.value)
	}
	return kgo.NewOffset().AtStart()
}

func isolation(f consumeFlags) (kgo.IsolationLevel, error) {
	switch {
	case f.readCommitted || f.isolationLevel == "read_committed":
		return kgo.ReadCommitted(), nil
	case f.isolationLevel == "read_uncommitted":
		return kgo.ReadUncommitted(), nil
	}
	return kgo.ReadUncommitted(), fmt.Errorf("--isolation-level %q: want read_uncommitted or read_committed", f.isolationLevel)
}

type topicPartition struct {
	topic     string
	partition int32
}

func runConsume(ctx context.Context, cmd *cobra.Command, client *clientFlags, topics []string, f consumeFlags) error {
	format, err := parseFormat(f.format)
	if err != nil {
		return err
	}
	start, err := parseStartOffset(f.offset, f.at)
	if err != nil {
		return err
	}
	iso, err := isolation(f)
	if err != nil {
		return err
	}
	if f.group != "" && (len(f.partitions) > 0 || f.exitAtEnd) {
		return errors.New("-p and -e cannot be used with -g: a group member consumes what the group assigns it")
	}
	opts := []kgo.Opt{kgo.FetchIsolationLevel(iso)}
	var ends map[topicPartition]int64 // with -e: where each partition ends
	if f.group != "" {
		opts = append(opts,
			kgo.ConsumerGroup(f.group),
			kgo.ConsumeTopics(topics...),
			kgo.ConsumeResetOffset(start.kgoOffset()),
			// Commit only what was printed: with -n the last fetch may hold
			// records this command never shows.
			kgo.AutoCommitMarks(),
		)
	} else {
		var direct []kgo.Opt
		direct, ends, err = directOpts(ctx, client, topics, f, start, iso == kgo.ReadCommitted())
		if err != nil || direct == nil {
			return err // nil: -e and nothing to read
		}
		opts = append(opts, direct...)
	}
	cl, err := client.newClient(opts...)
	if err != nil {
		return err
	}
	defer func() {
		if f.group != "" {
			// Commit what was printed before leaving, with a fresh deadline:
			// ctx may already be cancelled by ^C.
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := cl.CommitMarkedOffsets(cctx); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "idem: committing offsets:", err)
			}
			cancel()
		}
		cl.Close()
	}()
	return printRecords(ctx, cmd, cl, format, f, ends)
}

// directOpts are the options of a reader without a group: the partitions
// from their resolved offsets, and with -e where each ends (nil options: -e
// and every partition is already at its end).
func directOpts(ctx context.Context, client *clientFlags, topics []string, f consumeFlags, start startOffset, readCommitted bool) ([]kgo.Opt, map[topicPartition]int64, error) {
	from, ends, err := resolveOffsets(ctx, client, topics, f.partitions, start, readCommitted)
	if err != nil {
		return nil, nil, err
	}
	if !f.exitAtEnd {
		return []kgo.Opt{kgo.ConsumePartitions(from)}, ends, nil
	}
	for tp, end := range ends {
		if end <= from[tp.topic][tp.partition].EpochOffset().Offset {
			delete(ends, tp)
		}
	}
	if len(ends) == 0 {
		return nil, ends, nil
	}
	// Transaction markers are not printed, but one may be the last offset
	// below the end: without seeing it, -e would wait for ever.
	return []kgo.Opt{kgo.ConsumePartitions(from), kgo.KeepControlRecords()}, ends, nil
}

// printRecords polls and prints until ^C, -n records, or with -e the ends;
// a group member marks what it printed for commit.
func printRecords(ctx context.Context, cmd *cobra.Command, cl *kgo.Client, format recordFormat, f consumeFlags, ends map[topicPartition]int64) error {
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	var buf []byte
	printed := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return nil
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			fetchErr = fmt.Errorf("fetching %s/%d: %w", t, p, err)
		})
		if fetchErr != nil {
			// A direct reader has nothing else to do; a group member keeps
			// going, since the group may move the partition elsewhere.
			if f.group == "" {
				return fetchErr
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "idem:", fetchErr)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if done {
				return
			}
			if !r.Attrs.IsControl() {
				buf = format.write(buf[:0], r)
				out.Write(buf)
				printed++
			}
			if f.group != "" {
				cl.MarkCommitRecords(r)
			}
			if f.exitAtEnd {
				tp := topicPartition{r.Topic, r.Partition}
				if end, ok := ends[tp]; ok && r.Offset+1 >= end {
					delete(ends, tp)
				}
				done = len(ends) == 0
			}
			if f.count > 0 && printed >= f.count {
				done = true
			}
		})
		if err := out.Flush(); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// resolveOffsets turns a start offset into an exact offset per partition, so
// that -e knows where it starts and ends; it also returns each partition's
// end as of now: the high watermark, or for a read_committed reader the last
// stable offset, beyond which it cannot read until open transactions end.
func resolveOffsets(ctx context.Context, client *clientFlags, topics []string, only []int32, start startOffset, readCommitted bool) (map[string]map[int32]kgo.Offset, map[topicPartition]int64, error) {
	adm, closeAdm, err := client.newAdmin()
	if err != nil {
		return nil, nil, err
	}
	defer closeAdm()
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, nil, err
	}
	listEnds := adm.ListEndOffsets
	if readCommitted {
		listEnds = adm.ListCommittedOffsets
	}
	ends, err := listEnds(ctx, topics...)
	if err != nil {
		return nil, nil, err
	}
	var byTime kadm.ListedOffsets
	if start.kind == 't' {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, start.value, topics...); err != nil {
			return nil, nil, err
		}
	}
	want := map[int32]bool{}
	for _, p := range only {
		want[p] = true
	}
	from := map[string]map[int32]kgo.Offset{}
	endAt := map[topicPartition]int64{}
	var firstErr error
	ends.Each(func(e kadm.ListedOffset) {
		if len(want) > 0 && !want[e.Partition] {
			return
		}
		if e.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("topic %s partition %d: %w", e.Topic, e.Partition, e.Err)
			}
			return
		}
		s, _ := starts.Lookup(e.Topic, e.Partition)
		var at int64
		switch start.kind {
		case 's':
			at = s.Offset
		case 'e':
			at = e.Offset
		case '=':
			at = start.value
		case '+':
			at = min(s.Offset+start.value, e.Offset)
		case '-':
			at = max(e.Offset-start.value, s.Offset)
		case 't':
			at = e.Offset
			if o, ok := byTime.Lookup(e.Topic, e.Partition); ok && o.Err == nil && o.Offset >= 0 {
				at = o.Offset
			}
		}
		if from[e.Topic] == nil {
			from[e.Topic] = map[int32]kgo.Offset{}
		}
		from[e.Topic][e.Partition] = kgo.NewOffset().At(at)
		endAt[topicPartition{e.Topic, e.Partition}] = e.Offset
	})
	if firstErr != nil {
		return nil, nil, firstErr
	}
	for _, t := range topics {
		if len(from[t]) == 0 {
			return nil, nil, fmt.Errorf("topic %s: no such topic or partitions", t)
		}
	}
	return from, endAt, nil
}
