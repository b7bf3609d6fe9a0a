package topics

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"time"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/logstore"
)

// DataDirCheck is what CheckDataDir found: the catalog's state, every
// partition's log validated batch by batch, and directories not served.
type DataDirCheck struct {
	DataDir        string
	CatalogMissing bool
	Topics         []catalog.Topic
	Partitions     []PartitionCheck
	Orphans        []Orphan
}

// PartitionCheck is one partition's inspection.
type PartitionCheck struct {
	Topic string
	Index int32
	Dir   string
	Log   logstore.Inspection
	Err   error // the log could not be inspected at all
}

// Damaged reports whether the check found anything that stops a partition
// from being served or data from being managed.
func (c DataDirCheck) Damaged() bool {
	if c.CatalogMissing || len(c.Orphans) > 0 {
		return true
	}
	for _, p := range c.Partitions {
		if p.Err != nil || p.Log.Damage != nil {
			return true
		}
	}
	return false
}

// CheckDataDir inspects a stopped broker's data directory without changing
// it: the catalog, each partition's log (every batch's CRC and offsets, not
// only what a start validates) and topic directories the catalog does not
// list. topic, when not empty, limits the partitions inspected.
func CheckDataDir(fsys logstore.FS, dataDir, topic string) (DataDirCheck, error) {
	c := DataDirCheck{DataDir: dataDir}
	cat, err := catalog.Open(fsys, dataDir)
	if err != nil {
		return c, err
	}
	points, err := logstore.LoadRecoveryPoints(fsys, dataDir)
	if err != nil {
		return c, err
	}
	topicsDir := path.Join(dataDir, "topics")
	names, err := fsys.ReadDir(topicsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("topics: list %s: %w", topicsDir, err)
	}
	c.CatalogMissing = cat.Created() && len(names) > 0
	listed := map[string]bool{}
	for _, t := range cat.List() {
		listed[t.ID.Hex()] = true
		if topic != "" && t.Name != topic {
			continue
		}
		c.Topics = append(c.Topics, t)
		for i := int32(0); i < t.Partitions; i++ {
			dir := path.Join(topicsDir, t.ID.Hex(), strconv.Itoa(int(i)))
			in, err := logstore.Inspect(fsys, dir, points)
			c.Partitions = append(c.Partitions, PartitionCheck{Topic: t.Name, Index: i, Dir: dir, Log: in, Err: err})
		}
	}
	if topic != "" {
		if _, ok := cat.Get(topic); !ok {
			return c, fmt.Errorf("%w: %q", catalog.ErrUnknownTopic, topic)
		}
	}
	for _, n := range names {
		if listed[n] {
			continue
		}
		o := Orphan{Dir: path.Join(topicsDir, n), ID: n, Cause: "not in the catalog"}
		var id catalog.ID
		if id.UnmarshalText([]byte(n)) == nil {
			if d, ok := cat.Deleted(id); ok {
				o.Name, o.Cause = d.Name, "recorded as deleted; the broker removes it at its next start"
			} else if meta, err := readTopicMeta(fsys, o.Dir); err == nil {
				o.Name = meta.Topic.Name
			}
		} else {
			o.Cause = "not a topic id"
		}
		if c.CatalogMissing {
			o.Cause = "the catalog is missing"
		}
		c.Orphans = append(c.Orphans, o)
	}
	return c, nil
}

// PartitionRepair reports what RepairPartition did.
type PartitionRepair struct {
	Topic string
	Index int32
	logstore.RepairReport
}

// RepairPartition truncates one partition's log to its last valid batch,
// moving what it removes into <data>/quarantine/<topic>-<partition>-<time>.
// It is the operator's decision to accept losing the records after the
// damage; the broker never does it by itself.
func RepairPartition(fsys logstore.FS, dataDir, topic string, index int32, now time.Time) (PartitionRepair, error) {
	rep := PartitionRepair{Topic: topic, Index: index}
	cat, err := catalog.Open(fsys, dataDir)
	if err != nil {
		return rep, err
	}
	t, ok := cat.Get(topic)
	if !ok {
		return rep, fmt.Errorf("%w: %q", catalog.ErrUnknownTopic, topic)
	}
	if index < 0 || index >= t.Partitions {
		return rep, fmt.Errorf("%w: topic %q has partitions 0..%d, not %d", ErrUnknownPartition, topic, t.Partitions-1, index)
	}
	dir := path.Join(dataDir, "topics", t.ID.Hex(), strconv.Itoa(int(index)))
	quarantine := path.Join(dataDir, "quarantine", fmt.Sprintf("%s-%d-%s", topic, index, now.UTC().Format("20060102T150405Z")))
	points, err := logstore.LoadRecoveryPoints(fsys, dataDir)
	if err != nil {
		return rep, err
	}
	rep.RepairReport, err = logstore.Repair(fsys, dir, quarantine, points)
	return rep, err
}
