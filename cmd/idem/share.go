package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// newShareCmd lists and describes share groups (KIP-932 queues).
func newShareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "share",
		Short: "List and describe share groups: members, assignments, in-flight records, delivery counts, lag",
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(shareListCmd(client), shareDescribeCmd(client))
	return cmd
}

func shareListCmd(client *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List share groups",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			gs, err := adm.ListGroupsByType(cmd.Context(), []string{"share"})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE")
			for _, g := range gs.Sorted() {
				fmt.Fprintf(tw, "%s\t%s\n", g.Group, g.State)
			}
			return tw.Flush()
		},
	}
}

func shareDescribeCmd(client *clientFlags) *cobra.Command {
	var adminURL string
	cmd := &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Describe share groups",
		Long: `Describe share groups: members and their assignments, and per share
partition the start offset (SPSO), the lag, and the in-flight window: records
acquired, available, acknowledged and archived, and how often the in-flight
ones were delivered.

Members, assignments, start offsets and lag come from the Kafka APIs
(ShareGroupDescribe, DescribeShareGroupOffsets) and work against any broker
with share groups. The in-flight detail is idem's own: it is read from the
broker's /metrics (--admin-url; "" skips it).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			ctx := cmd.Context()
			described, err := adm.DescribeShareGroups(ctx, groups...)
			if err != nil {
				return err
			}
			offsets, err := adm.DescribeShareGroupOffsets(ctx, groups...)
			if err != nil {
				return err
			}
			var metrics shareMetrics
			if adminURL != "" {
				metrics, err = scrapeShareMetrics(ctx, adminURL)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "idem: no in-flight detail: %v\n", err)
				}
			}
			w := cmd.OutOrStdout()
			return describeEach(w, groups,
				func(name string) (kadm.DescribedShareGroup, bool, error) {
					d, ok := described[name]
					return d, ok, d.Err
				},
				func(name string, d kadm.DescribedShareGroup) error {
					return writeShareGroup(w, d, offsets[name], metrics)
				})
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin-url", "http://127.0.0.1:9644", "the broker's admin server, for in-flight detail (\"\": skip it)")
	return cmd
}

// writeShareGroup prints one share group.
func writeShareGroup(w io.Writer, d kadm.DescribedShareGroup, offs kadm.DescribedShareGroupOffsets, m shareMetrics) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var lag int64
	for _, ps := range offs.Offsets {
		for _, o := range ps {
			if o.Lag > 0 {
				lag += o.Lag
			}
		}
	}
	fmt.Fprintf(tw, "GROUP\t%s\n", d.GroupID)
	fmt.Fprintf(tw, "STATE\t%s\n", d.GroupState)
	fmt.Fprintf(tw, "EPOCH\t%d\n", d.GroupEpoch)
	fmt.Fprintf(tw, "MEMBERS\t%d\n", len(d.Members))
	fmt.Fprintf(tw, "TOTAL-LAG\t%d\n\n", lag)
	fmt.Fprintln(tw, "MEMBER-ID\tCLIENT-ID\tHOST\tEPOCH\tHOLDS\tASSIGNMENT")
	for _, mem := range d.Members {
		var parts []string
		for topic, ps := range mem.Assignment {
			for _, p := range ps {
				parts = append(parts, fmt.Sprintf("%s/%d", topic, p))
			}
		}
		slices.Sort(parts)
		holds := "-"
		if m != nil {
			holds = strconv.Itoa(int(m.get("idem_share_member_acquired_records", map[string]string{"group": d.GroupID, "member": mem.MemberID})))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", mem.MemberID, mem.ClientID, mem.ClientHost, mem.MemberEpoch, holds, strings.Join(parts, " "))
	}
	fmt.Fprintln(tw, "\nTOPIC\tPARTITION\tSTART-OFFSET\tLAG\tACQUIRED\tAVAILABLE\tACKNOWLEDGED\tARCHIVED\tDELIVERIES")
	topics := make([]string, 0, len(offs.Offsets))
	for t := range offs.Offsets {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	for _, topic := range topics {
		ps := offs.Offsets[topic]
		idx := make([]int32, 0, len(ps))
		for p := range ps {
			idx = append(idx, p)
		}
		slices.Sort(idx)
		for _, p := range idx {
			o := ps[p]
			l := map[string]string{"group": d.GroupID, "topic": topic, "partition": strconv.Itoa(int(p))}
			cols := []string{"-", "-", "-", "-", "-"}
			if m != nil {
				for i, st := range []string{"acquired", "available", "acknowledged", "archived"} {
					ls := map[string]string{"state": st}
					for k, v := range l {
						ls[k] = v
					}
					cols[i] = strconv.Itoa(int(m.get("idem_share_partition_records", ls)))
				}
				cols[4] = m.deliveries(l)
			}
			lagS := "-"
			if o.Lag >= 0 {
				lagS = strconv.FormatInt(o.Lag, 10)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", topic, p, o.StartOffset, lagS, strings.Join(cols, "\t"))
		}
	}
	return tw.Flush()
}

// shareMetrics holds the idem_share_* samples of one /metrics scrape.
type shareMetrics []metricSample

type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// get sums the samples of name whose labels include want.
func (m shareMetrics) get(name string, want map[string]string) float64 {
	var sum float64
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

// deliveries formats a partition's in-flight records by delivery count:
// "1:40 2:3".
func (m shareMetrics) deliveries(l map[string]string) string {
	counts := map[int]float64{}
	for _, s := range m {
		if s.name != "idem_share_partition_in_flight_deliveries" {
			continue
		}
		match := true
		for k, v := range l {
			match = match && s.labels[k] == v
		}
		if n, err := strconv.Atoi(s.labels["deliveries"]); match && err == nil && s.value > 0 {
			counts[n] += s.value
		}
	}
	if len(counts) == 0 {
		return "-"
	}
	keys := make([]int, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d:%d", k, int(counts[k])))
	}
	return strings.Join(parts, " ")
}

// scrapeShareMetrics reads the idem_share_ samples from the admin server.
func scrapeShareMetrics(ctx context.Context, adminURL string) (shareMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(adminURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", adminURL, resp.Status)
	}
	return parseShareMetrics(resp.Body)
}

// parseShareMetrics reads the idem_share_ samples (gauges and counters) of
// a scrape in Prometheus' text format, with Prometheus' own parser.
func parseShareMetrics(r io.Reader) (shareMetrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var out shareMetrics
	for name, f := range families {
		if !strings.HasPrefix(name, "idem_share_") {
			continue
		}
		for _, m := range f.GetMetric() {
			s := metricSample{name: name, labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Untyped != nil:
				s.value = m.GetUntyped().GetValue()
			default:
				continue // histograms and summaries are not shown here
			}
			out = append(out, s)
		}
	}
	return out, nil
}
