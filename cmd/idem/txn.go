package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// newTxnCmd shows the transaction coordinator's view: which transactional
// ids exist, what state they are in and which partitions an open
// transaction holds (and so which partitions' last stable offset it holds
// back).
func newTxnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "txn",
		Aliases: []string{"transaction", "transactions"},
		Short:   "List and describe transactions",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(txnListCmd(client), txnDescribeCmd(client))
	return cmd
}

func txnListCmd(client *clientFlags) *cobra.Command {
	var states []string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List transactional ids: state, producer id/epoch, partitions, age and timeout",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			listed, err := adm.ListTransactions(cmd.Context(), nil, states)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TRANSACTIONAL-ID\tSTATE\tPRODUCER-ID\tEPOCH\tPARTITIONS\tAGE\tTIMEOUT")
			if len(listed) == 0 {
				return tw.Flush()
			}
			described, err := adm.DescribeTransactions(cmd.Context(), listed.TransactionalIDs()...)
			if err != nil {
				return err
			}
			now := time.Now()
			for _, l := range listed.Sorted() {
				d, ok := described[l.TxnID]
				if !ok || d.Err != nil {
					fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\t-\t-\n", l.TxnID, l.State, l.ProducerID)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", d.TxnID, d.State, d.ProducerID, d.ProducerEpoch,
					countPartitions(d.Topics), txnAge(d, now), time.Duration(d.TimeoutMillis)*time.Millisecond)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort)")
	return cmd
}

func txnDescribeCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe TRANSACTIONAL-ID...",
		Short: "Describe transactional ids: state, producer id/epoch, partitions, age and timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			described, err := adm.DescribeTransactions(cmd.Context(), ids...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			now := time.Now()
			return describeEach(w, ids,
				func(id string) (kadm.DescribedTransaction, bool, error) {
					d, ok := described[id]
					return d, ok, d.Err
				},
				func(_ string, d kadm.DescribedTransaction) error { return writeTxn(w, d, now) })
		},
	}
}

// writeTxn prints one transactional id's state.
func writeTxn(w io.Writer, d kadm.DescribedTransaction, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TRANSACTIONAL-ID\t%s\n", d.TxnID)
	fmt.Fprintf(tw, "STATE\t%s\n", d.State)
	fmt.Fprintf(tw, "PRODUCER-ID\t%d\n", d.ProducerID)
	fmt.Fprintf(tw, "EPOCH\t%d\n", d.ProducerEpoch)
	fmt.Fprintf(tw, "TIMEOUT\t%s\n", time.Duration(d.TimeoutMillis)*time.Millisecond)
	if d.StartTimestamp >= 0 {
		fmt.Fprintf(tw, "STARTED\t%s (%s ago)\n", time.UnixMilli(d.StartTimestamp).UTC().Format(time.RFC3339Nano), txnAge(d, now))
	} else {
		fmt.Fprintf(tw, "STARTED\t-\n")
	}
	fmt.Fprintf(tw, "PARTITIONS\t%s\n", formatTopics(d.Topics))
	return tw.Flush()
}

func countPartitions(ts kadm.TopicsSet) int {
	n := 0
	for _, ps := range ts {
		n += len(ps)
	}
	return n
}

// txnAge is how long the transaction has been open ("-" if none is).
func txnAge(d kadm.DescribedTransaction, now time.Time) string {
	if d.StartTimestamp < 0 {
		return "-"
	}
	return now.Sub(time.UnixMilli(d.StartTimestamp)).Truncate(time.Millisecond).String()
}

func formatTopics(ts kadm.TopicsSet) string {
	if len(ts) == 0 {
		return "-"
	}
	var parts []string
	for _, tp := range ts.Sorted() {
		for _, p := range tp.Partitions {
			parts = append(parts, fmt.Sprintf("%s/%d", tp.Topic, p))
		}
	}
	return strings.Join(parts, " ")
}
