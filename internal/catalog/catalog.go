// Package catalog keeps the broker's topics: names, stable topic ids, partition
// counts and per-topic configuration overrides, plus the cluster id. It is a
// small JSON document rewritten atomically (write a temporary file, fsync it,
// rename it over the old one, fsync the directory) on every change, so after a
// crash or power loss the catalog is either the old or the new version, never a
// mix.
//
// Topic ids are random, non-zero UUIDs that are never reused: a topic deleted
// and created again under the same name gets a new id (clients use ids to
// notice that a topic was recreated).
package catalog

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"sort"
	"sync"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
)

// Errors returned by the catalog (the Kafka layer maps them to error codes).
var (
	ErrTopicExists       = errors.New("catalog: topic already exists")
	ErrUnknownTopic      = errors.New("catalog: unknown topic")
	ErrInvalidTopic      = errors.New("catalog: invalid topic name")
	ErrInvalidPartitions = errors.New("catalog: invalid partition count")
	ErrInvalidConfig     = errors.New("catalog: invalid topic config")
)

// MaxTopicNameLen is Kafka's limit (249, so that "<name>-<partition>" and the
// suffixes Kafka appends still fit in a 255-byte file name).
const MaxTopicNameLen = 249

// MaxPartitions bounds a topic's partition count; every partition is a
// directory with open files, so a typo like 1000000 must not take the node down.
const MaxPartitions = 10000

// ID is a topic id: a random UUID, never all zero.
type ID [16]byte

// String returns the id in the base64 form Kafka tools print.
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Hex returns the id as 32 hex digits (used for directory names).
func (id ID) Hex() string { return hex.EncodeToString(id[:]) }

// Topic is one topic's catalog entry. Topics returned by the catalog are copies.
type Topic struct {
	Name       string            `json:"name"`
	ID         ID                `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"` // topic-level names (retention.ms, …)
}

func (t Topic) clone() Topic {
	c := t
	if t.Configs != nil {
		c.Configs = make(map[string]string, len(t.Configs))
		for k, v := range t.Configs {
			c.Configs[k] = v
		}
	}
	return c
}

// Tombstone records a deleted topic whose data may still be on disk. Data is
// only ever removed for a deletion recorded here (or while the deletion runs):
// a directory that the catalog neither lists nor remembers deleting is kept.
type Tombstone struct {
	ID        ID     `json:"id"`
	Name      string `json:"name"`
	DeletedAt int64  `json:"deleted_at_ms"`
}

// file is the on-disk form.
type file struct {
	Version   int         `json:"version"`
	ClusterID string      `json:"cluster_id"`
	Topics    []Topic     `json:"topics"`
	Deleted   []Tombstone `json:"deleted,omitempty"`
}

const (
	fileName    = "catalog.json"
	fileVersion = 1
	maxFileSize = 64 << 20
)

// Catalog is the set of topics. It is safe for concurrent use.
type Catalog struct {
	fs  logstore.FS
	dir string

	created bool // Open found no catalog file and started a new one in memory
	disk    *logstore.Disk

	mu          sync.RWMutex
	initialised bool // Init wrote the created catalog
	clusterID   string
	topics      map[string]*Topic // mu guards topics, byID and deleted
	byID        map[ID]*Topic
	deleted     map[ID]Tombstone
}

// Open loads the catalog from dir. When there is no catalog file it returns
// an empty catalog with a fresh cluster id that exists only in memory
// (Created reports true): the caller decides, after checking that no topic
// data exists, whether to Init it. Open itself never writes: a broker that
// refuses to start must leave the data directory as it found it.
func Open(fsys logstore.FS, dir string) (*Catalog, error) {
	c := &Catalog{fs: fsys, dir: dir, topics: map[string]*Topic{}, byID: map[ID]*Topic{}, deleted: map[ID]Tombstone{}}
	data, err := readAll(fsys, path.Join(dir, fileName))
	switch {
	case err == nil:
		var f file
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("catalog: %s is damaged: %w", path.Join(dir, fileName), err)
		}
		if f.Version != fileVersion {
			return nil, fmt.Errorf("catalog: %s has version %d, this build reads %d", path.Join(dir, fileName), f.Version, fileVersion)
		}
		c.clusterID = f.ClusterID
		for i := range f.Topics {
			t := f.Topics[i]
			if err := ValidateName(t.Name); err != nil || t.ID == (ID{}) || t.Partitions < 1 {
				return nil, fmt.Errorf("catalog: %s holds an invalid topic entry %q", path.Join(dir, fileName), t.Name)
			}
			c.topics[t.Name] = &t
			c.byID[t.ID] = &t
		}
		for _, d := range f.Deleted {
			c.deleted[d.ID] = d
		}
	case isNotExist(fsys, path.Join(dir, fileName)):
		c.created = true
		id := newID()
		c.clusterID = base64.RawURLEncoding.EncodeToString(id[:])
	default:
		return nil, fmt.Errorf("catalog: reading %s: %w", path.Join(dir, fileName), err)
	}
	return c, nil
}

// UseDisk makes catalog writes draw on the disk reserve when the disk is
// full, so that topics can still be deleted to free space.
func (c *Catalog) UseDisk(d *logstore.Disk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disk = d
}

// Init writes a catalog that Open created in memory, making dir a data
// directory. It is a no-op for a catalog read from disk.
func (c *Catalog) Init() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.created || c.initialised {
		return nil
	}
	if err := c.fs.MkdirAll(c.dir); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if err := c.persistLocked(); err != nil {
		return err
	}
	c.initialised = true
	return nil
}

// Rebuild writes a new catalog file in dir holding topics, for an operator
// recovering a lost catalog from the topic metadata kept beside each topic's
// data. It refuses to overwrite an existing catalog.
func Rebuild(fsys logstore.FS, dir, clusterID string, topics []Topic) error {
	if !isNotExist(fsys, path.Join(dir, fileName)) {
		return fmt.Errorf("catalog: %s exists; refusing to overwrite it", path.Join(dir, fileName))
	}
	c := &Catalog{fs: fsys, dir: dir, clusterID: clusterID, topics: map[string]*Topic{}, byID: map[ID]*Topic{}, deleted: map[ID]Tombstone{}}
	if c.clusterID == "" {
		id := newID()
		c.clusterID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	for i := range topics {
		t := topics[i].clone()
		if err := ValidateName(t.Name); err != nil {
			return err
		}
		if t.ID == (ID{}) || t.Partitions < 1 {
			return fmt.Errorf("catalog: invalid topic entry %q", t.Name)
		}
		if c.topics[t.Name] != nil || c.byID[t.ID] != nil {
			return fmt.Errorf("catalog: topic %q (id %s) listed twice", t.Name, t.ID.Hex())
		}
		c.topics[t.Name], c.byID[t.ID] = &t, &t
	}
	return c.persistLocked()
}

func isNotExist(fsys logstore.FS, name string) bool {
	_, err := fsys.Stat(name)
	return err != nil
}

func readAll(fsys logstore.FS, name string) ([]byte, error) {
	return logstore.ReadFile(fsys, name, maxFileSize)
}

// persistLocked writes the catalog atomically and durably.
func (c *Catalog) persistLocked() error {
	f := file{Version: fileVersion, ClusterID: c.clusterID}
	for _, t := range c.topics {
		f.Topics = append(f.Topics, *t)
	}
	sort.Slice(f.Topics, func(i, j int) bool { return f.Topics[i].Name < f.Topics[j].Name })
	for _, d := range c.deleted {
		f.Deleted = append(f.Deleted, d)
	}
	sort.Slice(f.Deleted, func(i, j int) bool { return f.Deleted[i].ID.Hex() < f.Deleted[j].ID.Hex() })
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if err := c.disk.Do(func() error { return logstore.WriteFileAtomic(c.fs, path.Join(c.dir, fileName), data) }); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Created reports whether Open found no catalog and started an empty one in
// memory. The topic manager uses it to refuse to start over existing topic
// data whose catalog has gone missing.
func (c *Catalog) Created() bool { return c.created }

// ClusterID is the id generated when the data directory was created.
func (c *Catalog) ClusterID() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.clusterID
}

// ValidateName applies Kafka's topic name rules: 1–249 characters from
// [a-zA-Z0-9._-], and not "." or "..".
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if len(name) > MaxTopicNameLen {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidTopic, len(name), MaxTopicNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: %q is reserved", ErrInvalidTopic, name)
	}
	for _, r := range name {
		ok := r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%w: %q contains %q; allowed are ASCII letters, digits, '.', '_' and '-'", ErrInvalidTopic, name, r)
		}
	}
	return nil
}

// ValidateConfigs checks topic-level properties against the config registry.
func ValidateConfigs(configs map[string]string) error {
	for k, v := range configs {
		if _, err := config.ValidateTopic(k, v); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	}
	return nil
}

// Validate checks a prospective topic without creating it (CreateTopics with
// ValidateOnly uses it).
func (c *Catalog) Validate(name string, partitions int32, configs map[string]string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if partitions < 1 || partitions > MaxPartitions {
		return fmt.Errorf("%w: %d (want 1..%d)", ErrInvalidPartitions, partitions, MaxPartitions)
	}
	if err := ValidateConfigs(configs); err != nil {
		return err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, ok := c.topics[name]; ok {
		return fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	return nil
}

// Create adds a topic with a new id and persists the catalog before returning.
func (c *Catalog) Create(name string, partitions int32, configs map[string]string) (Topic, error) {
	if err := c.Validate(name, partitions, configs); err != nil {
		return Topic{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.topics[name]; ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopicExists, name)
	}
	id := newID()
	for c.byID[id] != nil {
		id = newID()
	}
	t := &Topic{Name: name, ID: id, Partitions: partitions}
	if len(configs) > 0 {
		t.Configs = map[string]string{}
		for k, v := range configs {
			t.Configs[k] = v
		}
	}
	c.topics[name], c.byID[id] = t, t
	if err := c.persistLocked(); err != nil {
		delete(c.topics, name)
		delete(c.byID, id)
		return Topic{}, err
	}
	return t.clone(), nil
}

// Delete removes a topic and records a tombstone for it, durably, before
// returning; the caller then removes its partition data and calls Forget.
// now is the deletion time in Unix milliseconds.
func (c *Catalog) Delete(name string, now int64) (Topic, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	delete(c.topics, name)
	delete(c.byID, t.ID)
	c.deleted[t.ID] = Tombstone{ID: t.ID, Name: t.Name, DeletedAt: now}
	if err := c.persistLocked(); err != nil {
		c.topics[name], c.byID[t.ID] = t, t
		delete(c.deleted, t.ID)
		return Topic{}, err
	}
	return t.clone(), nil
}

// Deleted reports whether id belongs to a topic whose deletion the catalog
// recorded and whose data may not be gone yet.
func (c *Catalog) Deleted(id ID) (Tombstone, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.deleted[id]
	return d, ok
}

// Forget drops the tombstone of a deleted topic once its data is gone.
func (c *Catalog) Forget(id ID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.deleted[id]
	if !ok {
		return nil
	}
	delete(c.deleted, id)
	if err := c.persistLocked(); err != nil {
		c.deleted[id] = d
		return err
	}
	return nil
}

// Adopt adds a topic with a known id (the operator re-attaching data that
// the catalog lost track of) and persists the catalog.
func (c *Catalog) Adopt(t Topic) error {
	if err := ValidateName(t.Name); err != nil {
		return err
	}
	if t.ID == (ID{}) || t.Partitions < 1 || t.Partitions > MaxPartitions {
		return fmt.Errorf("%w: topic %q with %d partitions", ErrInvalidPartitions, t.Name, t.Partitions)
	}
	if err := ValidateConfigs(t.Configs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.topics[t.Name]; ok {
		return fmt.Errorf("%w: %q", ErrTopicExists, t.Name)
	}
	if _, ok := c.byID[t.ID]; ok {
		return fmt.Errorf("%w: id %s", ErrTopicExists, t.ID.Hex())
	}
	nt := t.clone()
	c.topics[nt.Name], c.byID[nt.ID] = &nt, &nt
	delete(c.deleted, nt.ID)
	if err := c.persistLocked(); err != nil {
		delete(c.topics, nt.Name)
		delete(c.byID, nt.ID)
		return err
	}
	return nil
}

// SetConfigs replaces a topic's configuration overrides (validated first)
// and persists the catalog before returning.
func (c *Catalog) SetConfigs(name string, configs map[string]string) (Topic, error) {
	if err := ValidateConfigs(configs); err != nil {
		return Topic{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	old := t.Configs
	t.Configs = nil
	if len(configs) > 0 {
		t.Configs = maps.Clone(configs)
	}
	if err := c.persistLocked(); err != nil {
		t.Configs = old
		return Topic{}, err
	}
	return t.clone(), nil
}

// SetPartitions grows a topic to total partitions (Kafka never shrinks one).
func (c *Catalog) SetPartitions(name string, total int32, validateOnly bool) (Topic, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	if total <= t.Partitions {
		return Topic{}, fmt.Errorf("%w: topic %q has %d partitions; the new count %d must be larger", ErrInvalidPartitions, name, t.Partitions, total)
	}
	if total > MaxPartitions {
		return Topic{}, fmt.Errorf("%w: %d (at most %d)", ErrInvalidPartitions, total, MaxPartitions)
	}
	if validateOnly {
		return t.clone(), nil
	}
	old := t.Partitions
	t.Partitions = total
	if err := c.persistLocked(); err != nil {
		t.Partitions = old
		return Topic{}, err
	}
	return t.clone(), nil
}

// Get returns the topic called name.
func (c *Catalog) Get(name string) (Topic, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.topics[name]
	if !ok {
		return Topic{}, false
	}
	return t.clone(), true
}

// ByID returns the topic with the given id.
func (c *Catalog) ByID(id ID) (Topic, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.byID[id]
	if !ok {
		return Topic{}, false
	}
	return t.clone(), true
}

// List returns every topic sorted by name.
func (c *Catalog) List() []Topic {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Topic, 0, len(c.topics))
	for _, t := range c.topics {
		out = append(out, t.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func newID() ID {
	var id ID
	for id == (ID{}) {
		if _, err := rand.Read(id[:]); err != nil {
			panic("catalog: crypto/rand failed: " + err.Error())
		}
		// RFC 4122 version 4 layout, as Kafka's Uuid.randomUuid produces.
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
	}
	return id
}

// MarshalText stores ids as hex in the catalog file.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.Hex()), nil }

// UnmarshalText parses the hex form written by MarshalText.
func (id *ID) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(id) {
		return fmt.Errorf("topic id %q: want 32 hex digits", b)
	}
	_, err := hex.Decode(id[:], b)
	return err
}
