package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// newTopicCmd groups the rpk-style topic verbs.
func newTopicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe and delete topics",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(topicCreateCmd(client), topicListCmd(client), topicDescribeCmd(client), topicDeleteCmd(client))
	return cmd
}

func topicCreateCmd(client *clientFlags) *cobra.Command {
	var (
		partitions int32
		replicas   int16
		configs    []string
	)
	cmd := &cobra.Command{
		Use:   "create TOPIC...",
		Short: "Create topics",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			cfg := map[string]*string{}
			for _, c := range configs {
				k, v, ok := strings.Cut(c, "=")
				if !ok {
					return fmt.Errorf("-c %q: want name=value", c)
				}
				cfg[k] = kadm.StringPtr(v)
			}
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.CreateTopics(cmd.Context(), partitions, replicas, cfg, topics...)
			if err != nil {
				if mayHaveHappened(err) {
					return fmt.Errorf("%w: the broker may have created some of %s anyway; see idem topic describe", err, strings.Join(topics, ", "))
				}
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tSTATUS")
			var failed []string
			for _, t := range topics {
				r := resp[t]
				status := "OK"
				if r.Err != nil {
					status = errText(r.Err, r.ErrMessage)
					if mayHaveHappened(r.Err) {
						status += " (the topic may exist anyway)"
					}
					failed = append(failed, t)
				}
				fmt.Fprintf(tw, "%s\t%s\n", t, status)
			}
			tw.Flush()
			if len(failed) > 0 {
				return fmt.Errorf("could not create %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().Int32VarP(&partitions, "partitions", "p", -1, "number of partitions (-1: the broker's num.partitions)")
	cmd.Flags().Int16VarP(&replicas, "replicas", "r", -1, "replication factor (-1: broker default; idem is one node, so 1)")
	cmd.Flags().StringArrayVarP(&configs, "topic-config", "c", nil, "topic config name=value (e.g. retention.ms=3600000); repeatable")
	return cmd
}

func topicListCmd(client *clientFlags) *cobra.Command {
	var internal bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List topics",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			var ts kadm.TopicDetails
			if internal {
				ts, err = adm.ListTopicsWithInternal(cmd.Context())
			} else {
				ts, err = adm.ListTopics(cmd.Context())
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICAS")
			for _, t := range ts.Sorted() {
				if t.Err != nil {
					fmt.Fprintf(tw, "%s\t-\t-\t%v\n", t.Topic, t.Err)
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\n", t.Topic, len(t.Partitions), t.Partitions.NumReplicas())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&internal, "internal", "i", false, "include internal topics")
	return cmd
}

func topicDescribeCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe TOPIC...",
		Short: "Describe topics: summary, configs and partitions with offsets",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			ctx := cmd.Context()
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			details, err := adm.ListTopics(ctx, topics...)
			if err != nil {
				return err
			}
			configs, cfgErr := adm.DescribeTopicConfigs(ctx, topics...)
			starts, err := adm.ListStartOffsets(ctx, topics...)
			if err != nil {
				return err
			}
			ends, err := adm.ListEndOffsets(ctx, topics...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return describeEach(w, topics,
				func(name string) (kadm.TopicDetail, bool, error) {
					t, ok := details[name]
					return t, ok, t.Err
				},
				func(name string, t kadm.TopicDetail) error {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					writeTopicSummary(tw, t)
					writeTopicConfigs(tw, name, configs, cfgErr)
					fmt.Fprintln(tw, "\nPARTITIONS\n==========")
					fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tLOG-START-OFFSET\tHIGH-WATERMARK")
					for _, p := range t.Partitions.Sorted() {
						s, _ := starts.Lookup(name, p.Partition)
						e, _ := ends.Lookup(name, p.Partition)
						fmt.Fprintf(tw, "%d\t%d\t%v\t%d\t%d\n", p.Partition, p.Leader, p.Replicas, s.Offset, e.Offset)
					}
					return tw.Flush()
				})
		},
	}
}

func writeTopicSummary(tw io.Writer, t kadm.TopicDetail) {
	fmt.Fprintln(tw, "SUMMARY\n=======")
	fmt.Fprintf(tw, "NAME\t%s\n", t.Topic)
	// Kafka prints topic ids as unpadded URL-safe base64.
	fmt.Fprintf(tw, "ID\t%s\n", base64.RawURLEncoding.EncodeToString(t.ID[:]))
	fmt.Fprintf(tw, "PARTITIONS\t%d\n", len(t.Partitions))
	fmt.Fprintf(tw, "REPLICAS\t%d\n", t.Partitions.NumReplicas())
}

// writeTopicConfigs lists the topic's configs, or says why they are
// unavailable (the rest of the description is still useful).
func writeTopicConfigs(tw io.Writer, name string, configs kadm.ResourceConfigs, cfgErr error) {
	fmt.Fprintln(tw, "\nCONFIGS\n=======")
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	if cfgErr != nil {
		fmt.Fprintf(tw, "(unavailable: %v)\n", cfgErr)
		return
	}
	rc, err := configs.On(name, nil)
	if err != nil || rc.Err != nil {
		fmt.Fprintf(tw, "(unavailable: %v)\n", errors.Join(err, rc.Err))
		return
	}
	cs := slices.Clone(rc.Configs)
	slices.SortFunc(cs, func(a, b kadm.Config) int { return strings.Compare(a.Key, b.Key) })
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Key, c.MaybeValue(), c.Source)
	}
}

func topicDeleteCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete TOPIC...",
		Short: "Delete topics and their data",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.DeleteTopics(cmd.Context(), topics...)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			defer tw.Flush()
			fmt.Fprintln(tw, "TOPIC\tSTATUS")
			return eachNamed("delete", topics,
				func(name string) (kadm.DeleteTopicResponse, bool, error) {
					r, ok := resp[name]
					if ok && r.Err != nil {
						return r, ok, errors.New(errText(r.Err, r.ErrMessage))
					}
					return r, ok, nil
				},
				func(name string, _ kadm.DeleteTopicResponse) error {
					fmt.Fprintf(tw, "%s\tOK\n", name)
					return nil
				},
				func(name, why string) { fmt.Fprintf(tw, "%s\t%s\n", name, why) })
		},
	}
}

// errText is a Kafka error with the broker's message, if it sent one.
// mayHaveHappened reports whether err leaves it open whether the broker
// did what was asked: the answer did not come in time, but the request may
// have been carried out.
func mayHaveHappened(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kerr.RequestTimedOut)
}

func errText(err error, msg string) string {
	if msg != "" {
		return fmt.Sprintf("%v: %s", err, msg)
	}
	return err.Error()
}
