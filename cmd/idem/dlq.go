package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idem-dev/idem/internal/dlq"
)

// `idem dlq` is a thin layer over internal/dlq, which the admin API and
// console share: finding dead-letter topics, listing their records and the
// idempotent redrive (with its ledger and crash recovery) live there.

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List share groups' dead-letter topics and move their records back (redrive)",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(dlqListCmd(client), dlqRedriveCmd(client))
	return cmd
}

func dlqListCmd(client *clientFlags) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list [DLQ-TOPIC]",
		Short: "List dead-letter topics, or the records of one",
		Long: `Without a topic: every dead-letter topic (errors.deadletterqueue.group.enable=true,
named with the dlq. prefix, or named by a share group's errors.deadletterqueue.topic.name)
and how many records it holds. With a topic: its records with their source
(topic, partition, offset), group, delivery count, reason, and whether they
were redriven.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit <= 0 {
				return fmt.Errorf("--limit %d: want a positive number", limit)
			}
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			if len(args) == 0 {
				topics, err := dlq.Topics(ctx, cl)
				if err != nil {
					return err
				}
				return writeDLQTopics(cmd.OutOrStdout(), topics)
			}
			pg, err := dlq.List(ctx, cl, args[0], dlq.ListOptions{Limit: limit})
			if err != nil {
				return err
			}
			return writeDeadLetters(cmd.OutOrStdout(), pg)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most records to print")
	return cmd
}

func writeDLQTopics(w io.Writer, topics []dlq.Topic) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ-TOPIC\tPARTITIONS\tRECORDS\tGROUPS")
	for _, t := range topics {
		groups := strings.Join(t.Groups, ",")
		if !t.Exists {
			groups += " (not created yet)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Name, t.Partitions, t.Records, groups)
	}
	return tw.Flush()
}

func writeDeadLetters(w io.Writer, pg dlq.Page) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tDEAD-LETTERED\tSOURCE\tGROUP\tDELIVERIES\tREASON\tREDRIVEN")
	for _, r := range pg.Records {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s/%d@%d\t%s\t%d\t%s\t%v\n", r.Partition, r.Offset, r.Timestamp.Format(time.RFC3339),
			r.Source.Topic, r.Source.Partition, r.Source.Offset, r.Group, r.DeliveryCount, r.Reason, r.Redriven)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if pg.Next != nil {
		fmt.Fprintf(w, "(more from partition %d offset %d: raise --limit)\n", pg.Next.Partition, pg.Next.Offset)
	}
	return nil
}

func dlqRedriveCmd(client *clientFlags) *cobra.Command {
	var o dlq.Options
	var since, until string
	var headers []string
	cmd := &cobra.Command{
		Use:   "redrive DLQ-TOPIC",
		Short: "Move dead-lettered records back to their source topic (or another), once",
		Long: `Move the records of a dead-letter topic back to the topic each came from
(--to: another topic), all of them or those matching --group, --since/--until
(when they were dead-lettered) and --header, at most --limit. The key, value
and headers are the dead-letter record's when the group copied them
(errors.deadletterqueue.copy.record.enable), else read from the source topic
(a record no longer retained there is reported and skipped). A record keeps
its source partition when it goes back to its source topic.

Redrive is idempotent: a second run, or a run after a crash or kill mid-run,
re-sends nothing twice (the ledger topic idem.redrive.<DLQ-TOPIC> records
what was moved). Run one redrive per dead-letter topic at a time (the admin
API refuses a second one in its process; it cannot see a CLI's). The
dead-letter records stay where they are.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Since, err = parseTimeFlag(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if o.Until, err = parseTimeFlag(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			if o.Limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (no limit) or more", o.Limit)
			}
			o.Headers = map[string]string{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				o.Headers[k] = v
			}
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := dlq.Redrive(cmd.Context(), cl, args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redriven %d; already redriven %d (recovered from an unfinished run: %d); filtered out %d; left past --limit %d; source gone %d\n",
				res.Redriven, res.Already, res.Recovered, res.Filtered, res.Left, res.Gone)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Target, "to", "", "target topic (default: each record's source topic)")
	f.StringVar(&o.Group, "group", "", "only records dead-lettered by this share group")
	f.StringVar(&since, "since", "", "only records dead-lettered at or after this time (RFC 3339 or Unix milliseconds)")
	f.StringVar(&until, "until", "", "only records dead-lettered before this time")
	f.StringArrayVar(&headers, "header", nil, "only records with this header key=value (repeatable; __dlq.errors.* included)")
	f.IntVar(&o.Limit, "limit", 0, "move at most this many records (0: all); the rest wait for a later run")
	f.BoolVar(&o.DryRun, "dry-run", false, "count what would move, move nothing")
	f.IntVar(&o.Batch, "batch", 500, "records per produce batch (and per ledger entry)")
	return cmd
}

func parseTimeFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	return time.Parse(time.RFC3339, s)
}
