package topics

import (
	"encoding/json"
	"fmt"
	"path"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/logstore"
)

// topicMetaName is the file beside a topic's partition directories that
// repeats its catalog entry. Directories are named by topic id alone, so
// without it a lost catalog.json would leave data that nobody can name; with
// it, `idem storage recover-catalog` rebuilds the catalog exactly. Kafka keeps
// the same safety net in each partition's partition.metadata file.
const topicMetaName = "topic.json"

// topicMeta is the on-disk form of topic.json.
type topicMeta struct {
	Version   int           `json:"version"`
	ClusterID string        `json:"cluster_id"`
	Topic     catalog.Topic `json:"topic"`
}

const topicMetaVersion = 1

// writeTopicMeta records t in its directory, crash-safely.
func writeTopicMeta(fsys logstore.FS, topicDir, clusterID string, t catalog.Topic) error {
	if err := fsys.MkdirAll(topicDir); err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	b, err := json.MarshalIndent(topicMeta{Version: topicMetaVersion, ClusterID: clusterID, Topic: t}, "", "  ")
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	return logstore.WriteFileAtomic(fsys, path.Join(topicDir, topicMetaName), b)
}

// readTopicMeta reads topic.json of a topic directory.
func readTopicMeta(fsys logstore.FS, topicDir string) (topicMeta, error) {
	b, err := logstore.ReadFile(fsys, path.Join(topicDir, topicMetaName), 1<<20)
	if err != nil {
		return topicMeta{}, err
	}
	var m topicMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return topicMeta{}, fmt.Errorf("topics: %s is damaged: %w", path.Join(topicDir, topicMetaName), err)
	}
	if m.Version != topicMetaVersion {
		return topicMeta{}, fmt.Errorf("topics: %s has version %d, this build reads %d", path.Join(topicDir, topicMetaName), m.Version, topicMetaVersion)
	}
	if err := catalog.ValidateName(m.Topic.Name); err != nil || m.Topic.ID == (catalog.ID{}) || m.Topic.Partitions < 1 {
		return topicMeta{}, fmt.Errorf("topics: %s holds an invalid topic entry", path.Join(topicDir, topicMetaName))
	}
	return m, nil
}
