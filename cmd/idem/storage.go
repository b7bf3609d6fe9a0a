package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/topics"
)

// storageCmd works on a stopped broker's data directory: it inspects every
// log batch by batch and, only when asked, repairs what a start refuses to
// serve. Each command takes the data directory's lock, so it never runs
// beside a broker.
func newStorageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Inspect and repair a stopped broker's data directory",
		Long: `Inspect and repair a stopped broker's data directory.

A broker never deletes or truncates acknowledged data by itself: a partition
whose log is damaged below its recovery point is offline (KAFKA_STORAGE_ERROR)
and a missing catalog stops the start. These commands show what is wrong and,
on an explicit request, put it right:

  idem storage check                       validate every batch of every log
  idem storage repair --topic T --partition P --yes
                                           cut a damaged log back to its last valid
                                           batch (what is cut is kept in quarantine/)
  idem storage recover-catalog             rebuild a missing catalog.json, or adopt
                                           topic data the catalog does not list`,
	}
	cmd.AddCommand(storageCheckCmd(), storageRepairCmd(), storageRecoverCatalogCmd())
	return cmd
}

// withDataDir locks dir for the duration of fn.
func withDataDir(dir string, fn func() error) error {
	unlock, err := topics.LockDataDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

func storageCheckCmd() *cobra.Command {
	var dataDir, topic string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate every batch of every partition log, the catalog and the topic directories (read-only)",
		Long: `Validate every batch of every partition log (CRC and offsets), the catalog
and the topic directories, without changing anything. Exits with status 1
when something needs the operator (damage, a missing catalog, unserved data).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var c topics.DataDirCheck
			err := withDataDir(dataDir, func() (err error) {
				c, err = topics.CheckDataDir(logstore.OSFS(), dataDir, topic)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(checkJSON(c)); err != nil {
					return err
				}
			} else {
				printCheck(cmd.OutOrStdout(), dataDir, c)
			}
			if c.Damaged() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./idem-data", "the broker's data directory (log.dirs)")
	cmd.Flags().StringVar(&topic, "topic", "", "check only this topic's partitions")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printCheck(w io.Writer, dataDir string, c topics.DataDirCheck) {
	if c.CatalogMissing {
		fmt.Fprintf(w, "catalog: MISSING (the broker refuses to start); rebuild it with: idem storage recover-catalog --data-dir %s\n\n", dataDir)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSEGMENTS\tBATCHES\tOFFSETS\tRECOVERY-POINT\tSTATE")
	for _, p := range c.Partitions {
		name := fmt.Sprintf("%s-%d", p.Topic, p.Index)
		if p.Err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tUNREADABLE: %v\n", name, p.Err)
			continue
		}
		state := "ok"
		if d := p.Log.Damage; d != nil {
			kind := "torn tail (a start truncates it)"
			if d.BelowRecoveryPoint {
				kind = "DAMAGED below the recovery point (offline until repaired)"
			}
			state = fmt.Sprintf("%s at offset %d, %s byte %d: %s", kind, d.Offset, d.Segment, d.Position, d.Reason)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d..%d\t%d\t%s\n", name, p.Log.Segments, p.Log.Batches, p.Log.StartOffset, p.Log.EndOffset, p.Log.RecoveryPoint, state)
	}
	tw.Flush()
	for _, p := range c.Partitions {
		if d := p.Log.Damage; d != nil && d.BelowRecoveryPoint {
			fmt.Fprintf(w, "\n%s-%d: `idem storage repair --data-dir %s --topic %s --partition %d` would cut the log at offset %d,\n  moving %d bytes (%d later segments, offsets up to at least %d) into %s/quarantine/\n",
				p.Topic, p.Index, dataDir, p.Topic, p.Index, d.Offset, d.DropBytes, len(d.DropSegments), d.LastKnownOffset, dataDir)
		}
	}
	for _, o := range c.Orphans {
		fmt.Fprintf(w, "\nunserved topic data %s (topic %q): %s\n", o.Dir, o.Name, o.Cause)
	}
	if len(c.Orphans) > 0 && !c.CatalogMissing {
		fmt.Fprintf(w, "adopt it with `idem storage recover-catalog --data-dir %s`, or remove the directory if it is not wanted\n", dataDir)
	}
}

// checkJSON is the machine-readable form of a check.
func checkJSON(c topics.DataDirCheck) any {
	type damage struct {
		Offset             int64    `json:"offset"`
		Segment            string   `json:"segment"`
		Position           int64    `json:"position"`
		Reason             string   `json:"reason"`
		BelowRecoveryPoint bool     `json:"below_recovery_point"`
		DropBytes          int64    `json:"drop_bytes"`
		DropSegments       []string `json:"drop_segments"`
	}
	type part struct {
		Topic         string  `json:"topic"`
		Partition     int32   `json:"partition"`
		Segments      int     `json:"segments"`
		Batches       int     `json:"batches"`
		StartOffset   int64   `json:"start_offset"`
		EndOffset     int64   `json:"end_offset"`
		RecoveryPoint int64   `json:"recovery_point"`
		Damage        *damage `json:"damage,omitempty"`
		Error         string  `json:"error,omitempty"`
	}
	type orphan struct {
		Dir   string `json:"dir"`
		Topic string `json:"topic,omitempty"`
		Cause string `json:"cause"`
	}
	out := struct {
		CatalogMissing bool     `json:"catalog_missing"`
		Damaged        bool     `json:"needs_operator"`
		Partitions     []part   `json:"partitions"`
		Orphans        []orphan `json:"unserved_topic_dirs"`
	}{CatalogMissing: c.CatalogMissing, Damaged: c.Damaged(), Partitions: []part{}, Orphans: []orphan{}}
	for _, p := range c.Partitions {
		jp := part{Topic: p.Topic, Partition: p.Index, Segments: p.Log.Segments, Batches: p.Log.Batches,
			StartOffset: p.Log.StartOffset, EndOffset: p.Log.EndOffset, RecoveryPoint: p.Log.RecoveryPoint}
		if p.Err != nil {
			jp.Error = p.Err.Error()
		}
		if d := p.Log.Damage; d != nil {
			jp.Damage = &damage{d.Offset, d.Segment, d.Position, d.Reason, d.BelowRecoveryPoint, d.DropBytes, d.DropSegments}
		}
		out.Partitions = append(out.Partitions, jp)
	}
	for _, o := range c.Orphans {
		out.Orphans = append(out.Orphans, orphan{o.Dir, o.Name, o.Cause})
	}
	return out
}

func storageRepairCmd() *cobra.Command {
	var (
		dataDir, topic string
		index          int32
		yes            bool
	)
	cmd := &cobra.Command{
		Use:   "repair --topic T --partition P --yes",
		Short: "Cut a damaged partition log back to its last valid batch (what is cut goes to quarantine/)",
		Long: `Cut a damaged partition log back to its last valid batch. The records from
the damage on are lost to consumers; the bytes are moved, not deleted, into
<data-dir>/quarantine/<topic>-<partition>-<time>/. Without --yes it only prints
what it would do and exits with status 1 when there is damage (so a script can
tell a plan from a repair), 0 when there is nothing to repair.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			return withDataDir(dataDir, func() error {
				c, err := topics.CheckDataDir(logstore.OSFS(), dataDir, topic)
				if err != nil {
					return err
				}
				var target *topics.PartitionCheck
				for i := range c.Partitions {
					if c.Partitions[i].Index == index {
						target = &c.Partitions[i]
					}
				}
				if target == nil {
					return fmt.Errorf("topic %q has no partition %d", topic, index)
				}
				if target.Err != nil {
					return fmt.Errorf("%s-%d cannot be inspected: %w", topic, index, target.Err)
				}
				d := target.Log.Damage
				if d == nil {
					fmt.Fprintf(w, "%s-%d: every batch validates (offsets %d..%d); nothing to repair\n", topic, index, target.Log.StartOffset, target.Log.EndOffset)
					return nil
				}
				fmt.Fprintf(w, "%s-%d: damage at offset %d (%s byte %d): %s\n", topic, index, d.Offset, d.Segment, d.Position, d.Reason)
				fmt.Fprintf(w, "repair cuts the log at offset %d: %d bytes, %d later segments (offsets up to at least %d) move to quarantine\n",
					d.Offset, d.DropBytes, len(d.DropSegments), d.LastKnownOffset)
				if !yes {
					fmt.Fprintln(w, "nothing changed: run again with --yes to repair")
					return &exitError{code: 1}
				}
				rep, err := topics.RepairPartition(logstore.OSFS(), dataDir, topic, index, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "repaired: the log now ends at offset %d; removed data kept in %s:\n", rep.NewEnd, rep.Quarantine)
				for _, m := range rep.Moved {
					fmt.Fprintf(w, "  %s\n", m)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./idem-data", "the broker's data directory (log.dirs)")
	cmd.Flags().StringVar(&topic, "topic", "", "topic of the partition to repair")
	cmd.Flags().Int32Var(&index, "partition", 0, "partition to repair")
	cmd.Flags().BoolVar(&yes, "yes", false, "really repair (without it, only print the plan)")
	cmd.MarkFlagRequired("topic")
	cmd.MarkFlagRequired("partition")
	return cmd
}

func storageRecoverCatalogCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "recover-catalog",
		Short: "Rebuild a missing catalog.json from the topic data, or adopt topic data the catalog does not list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			return withDataDir(dataDir, func() error {
				rep, err := topics.RecoverCatalog(logstore.OSFS(), dataDir)
				if err != nil {
					return err
				}
				if rep.Rebuilt {
					fmt.Fprintf(w, "rebuilt catalog.json (cluster id %s)\n", rep.ClusterID)
				}
				for _, t := range rep.Topics {
					fmt.Fprintf(w, "adopted topic %q: %d partitions, id %s", t.Topic.Name, t.Topic.Partitions, t.Topic.ID.Hex())
					if t.Note != "" {
						fmt.Fprintf(w, " (%s)", t.Note)
					}
					fmt.Fprintln(w)
				}
				for _, o := range rep.Skipped {
					fmt.Fprintf(w, "left alone %s (%q): %s\n", o.Dir, o.Name, o.Cause)
				}
				if !rep.Rebuilt && len(rep.Topics) == 0 {
					fmt.Fprintln(w, "the catalog already lists every topic directory; nothing changed")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./idem-data", "the broker's data directory (log.dirs)")
	return cmd
}
