package topics

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/logstore"
)

// Offline operations on a stopped broker's data directory, behind
// `idem storage`. None of them runs automatically: each is an operator's
// recorded decision, and each reports what it did.

// RecoveredTopic is a topic put back into the catalog from its data.
type RecoveredTopic struct {
	Topic catalog.Topic
	// FromMeta is false when topic.json was missing or unreadable and the
	// name and partition count were inferred from the directory.
	FromMeta bool
	Note     string
}

// CatalogRecovery reports what RecoverCatalog did.
type CatalogRecovery struct {
	Rebuilt   bool // catalog.json was missing and has been written
	ClusterID string
	Topics    []RecoveredTopic // topics added to the catalog
	Skipped   []Orphan         // directories left alone, with the reason
}

// RecoverCatalog puts topic data back under the catalog's management. When
// catalog.json is missing it rebuilds it from every topic directory; when it
// exists it adopts the directories it does not list (orphans). A topic is
// described by the topic.json kept in its directory; without one, its
// partitions are counted from the directory and it is named
// "recovered-<id>", for the operator to read and re-publish. Nothing is
// deleted; a directory that cannot be adopted (its name is taken, it is not a
// topic id, it was recorded as deleted) is reported and left alone.
func RecoverCatalog(fsys logstore.FS, dataDir string) (CatalogRecovery, error) {
	var rep CatalogRecovery
	topicsDir := path.Join(dataDir, "topics")
	names, err := fsys.ReadDir(topicsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("topics: list %s: %w", topicsDir, err)
	}
	cat, err := catalog.Open(fsys, dataDir)
	if err != nil {
		return rep, err
	}
	var found []RecoveredTopic
	for _, n := range names {
		dir := path.Join(topicsDir, n)
		var id catalog.ID
		if err := id.UnmarshalText([]byte(n)); err != nil {
			rep.Skipped = append(rep.Skipped, Orphan{Dir: dir, ID: n, Cause: "not a topic id"})
			continue
		}
		if _, ok := cat.ByID(id); ok {
			continue
		}
		if d, ok := cat.Deleted(id); ok {
			rep.Skipped = append(rep.Skipped, Orphan{Dir: dir, ID: n, Name: d.Name, Cause: "recorded as deleted; the broker removes it at its next start"})
			continue
		}
		rt, err := describeTopicDir(fsys, dir, id)
		if err != nil {
			rep.Skipped = append(rep.Skipped, Orphan{Dir: dir, ID: n, Cause: err.Error()})
			continue
		}
		if rep.ClusterID == "" && rt.FromMeta {
			if meta, err := readTopicMeta(fsys, dir); err == nil {
				rep.ClusterID = meta.ClusterID
			}
		}
		found = append(found, rt)
	}
	taken := map[string]bool{}
	for _, t := range cat.List() {
		taken[t.Name] = true
	}
	var adopt []catalog.Topic
	for _, rt := range found {
		if taken[rt.Topic.Name] {
			rep.Skipped = append(rep.Skipped, Orphan{Dir: path.Join(topicsDir, rt.Topic.ID.Hex()), ID: rt.Topic.ID.Hex(), Name: rt.Topic.Name,
				Cause: "a topic of that name exists; rename one of them first"})
			continue
		}
		taken[rt.Topic.Name] = true
		adopt = append(adopt, rt.Topic)
		rep.Topics = append(rep.Topics, rt)
	}
	if cat.Created() {
		if err := catalog.Rebuild(fsys, dataDir, rep.ClusterID, adopt); err != nil {
			return rep, err
		}
		rep.Rebuilt = true
		c, err := catalog.Open(fsys, dataDir)
		if err != nil {
			return rep, err
		}
		rep.ClusterID = c.ClusterID()
		return rep, nil
	}
	rep.ClusterID = cat.ClusterID()
	for _, t := range adopt {
		if err := cat.Adopt(t); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// describeTopicDir reads a topic directory's topic.json, or infers what it
// can when that is missing.
func describeTopicDir(fsys logstore.FS, dir string, id catalog.ID) (RecoveredTopic, error) {
	meta, err := readTopicMeta(fsys, dir)
	if err == nil {
		if meta.Topic.ID != id {
			return RecoveredTopic{}, fmt.Errorf("topic.json names id %s, the directory %s", meta.Topic.ID.Hex(), id.Hex())
		}
		t := meta.Topic
		if n := countPartitionDirs(fsys, dir); n > t.Partitions {
			t.Partitions = n
		}
		return RecoveredTopic{Topic: t, FromMeta: true}, nil
	}
	n := countPartitionDirs(fsys, dir)
	if n == 0 {
		return RecoveredTopic{}, fmt.Errorf("no topic.json and no partition directories")
	}
	name := "recovered-" + id.Hex()[:12]
	return RecoveredTopic{
		Topic: catalog.Topic{Name: name, ID: id, Partitions: n},
		Note:  fmt.Sprintf("topic.json unreadable (%v): named %s with %d partitions and broker-default configs", err, name, n),
	}, nil
}

// countPartitionDirs returns one more than the highest numbered partition
// directory (partitions are numbered from 0 without gaps).
func countPartitionDirs(fsys logstore.FS, dir string) int32 {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := int32(0)
	for _, name := range names {
		if strings.Contains(name, ".") {
			continue
		}
		if i, err := strconv.ParseInt(name, 10, 32); err == nil && i >= 0 && int32(i)+1 > n && i < catalog.MaxPartitions {
			n = int32(i) + 1
		}
	}
	return n
}
