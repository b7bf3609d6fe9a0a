package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// newGroupCmd groups the rpk-style consumer group verbs.
func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "group",
		Aliases: []string{"g"},
		Short:   "List and describe consumer groups",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(groupListCmd(client), groupDescribeCmd(client))
	return cmd
}

func groupListCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List consumer groups",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			gs, err := adm.ListGroups(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL-TYPE")
			for _, g := range gs.Sorted() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
			}
			return tw.Flush()
		},
	}
}

func groupDescribeCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Describe consumer groups: state, members, committed offsets and lag",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			lags, err := adm.Lag(cmd.Context(), groups...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return describeEach(w, groups,
				func(name string) (kadm.DescribedGroupLag, bool, error) {
					l, ok := lags[name]
					if !ok {
						return l, false, nil
					}
					return l, true, l.Error()
				},
				func(_ string, l kadm.DescribedGroupLag) error { return writeGroupLag(w, l) })
		},
	}
}

// writeGroupLag prints one group: its state and, per partition, the
// committed offset, the log's bounds, the lag and the member that owns it.
func writeGroupLag(w io.Writer, l kadm.DescribedGroupLag) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "GROUP\t%s\n", l.Group)
	fmt.Fprintf(tw, "COORDINATOR\t%d\n", l.Coordinator.NodeID)
	fmt.Fprintf(tw, "STATE\t%s\n", l.State)
	fmt.Fprintf(tw, "PROTOCOL\t%s\n", l.Protocol)
	fmt.Fprintf(tw, "MEMBERS\t%d\n", len(l.Members))
	fmt.Fprintf(tw, "TOTAL-LAG\t%d\n\n", l.Lag.Total())
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-START-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER-ID\tCLIENT-ID\tHOST")
	for _, m := range l.Lag.Sorted() {
		member, client, host := "", "", ""
		if m.Member != nil {
			member, client, host = m.Member.MemberID, m.Member.ClientID, m.Member.ClientHost
		}
		current := "-"
		if m.Commit.At >= 0 {
			current = fmt.Sprint(m.Commit.At)
		}
		lag := "-"
		if m.Lag >= 0 {
			lag = fmt.Sprint(m.Lag)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n",
			m.Topic, m.Partition, current, m.Start.Offset, m.End.Offset, lag, member, client, host)
	}
	return tw.Flush()
}
