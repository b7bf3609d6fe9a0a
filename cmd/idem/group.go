package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// groupCmd groups the rpk-style consumer group verbs.
var groupCmd = &cobra.Command{
	Use:     "group",
	Aliases: []string{"g"},
	Short:   "List and describe consumer groups",
}

func init() {
	addClientFlags(groupCmd)
	groupCmd.AddCommand(groupListCmd(), groupDescribeCmd())
	rootCmd.AddCommand(groupCmd)
}

func groupListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List consumer groups",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := newAdmin()
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

func groupDescribeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Describe consumer groups: state, members, committed offsets and lag",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			adm, done, err := newAdmin()
			if err != nil {
				return err
			}
			defer done()
			lags, err := adm.Lag(cmd.Context(), groups...)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			var failed []string
			for i, name := range groups {
				if i > 0 {
					fmt.Fprintln(w)
				}
				l, ok := lags[name]
				if !ok {
					fmt.Fprintf(w, "%s: not returned by the broker\n", name)
					failed = append(failed, name)
					continue
				}
				if err := l.Error(); err != nil {
					fmt.Fprintf(w, "%s: %v\n", name, err)
					failed = append(failed, name)
					continue
				}
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
				tw.Flush()
			}
			if len(failed) > 0 {
				return fmt.Errorf("could not describe %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
}
