package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The recovery points of a data directory's logs advance every second while
// they are written. Persisting each log's advance in its own checkpoint file
// costs two fsyncs and a rename per log per second: at a thousand busy
// partitions that was a fifth of the broker's CPU and as many fsyncs as the
// appends themselves. Kafka keeps one recovery-point-offset-checkpoint file
// per log directory for the same reason; so does idem.
//
// The per-log checkpoint file (checkpoint.go) stays the authority: every
// change that must be durable at once (a log start moved by DeleteRecords or
// retention, a truncation, a clean close, a repair) is written there, each
// write with a new generation number. The shared file only records advances
// of the recovery point since: "log L at generation G has everything below R
// fsynced". At open, a shared entry counts only when its generation is the
// per-log file's, so an entry written before a later per-log write (say a
// truncation that lowered the recovery point) is ignored, never trusted.
// Losing the shared file only widens the torn-tail window, as losing an
// interval's checkpoint always did.
//
//	"RPT1" | count uint32 | count × (len uint16 | log dir relative to the
//	data directory | generation uint64 | recovery point int64) | crc32c of
//	all before
const (
	// RecoveryPointsFileName is the shared file's name in the data directory.
	RecoveryPointsFileName = "recovery-points"
	recoveryPointsMagic    = "RPT1"
	// recoveryPointsMaxBytes bounds what a read of the file allocates: a
	// million logs with long names fit.
	recoveryPointsMaxBytes = 256 << 20
)

// RecoveryPoints is what a data directory's shared file says (the zero
// value says nothing).
type RecoveryPoints struct {
	dataDir string
	entries map[string]RecoveryPoint // by log directory relative to dataDir
}

// RecoveryPoint is one log's entry: with the per-log checkpoint at
// Generation, every offset below Offset was fsynced.
type RecoveryPoint struct {
	Generation uint64
	Offset     int64
}

// sharedPoints is a data directory's shared recovery-point file and the
// advances not yet written to it. Logs record their advances (cheap: a map
// update) and the first syncer to find the file older than the interval
// starts a write for all of them (maybeFlush), so the cost is one file per
// interval however many logs there are. No goroutine lives on: an idle
// broker has nothing to record, and a closing log records its final point,
// which whoever closes the data directory writes once for all, joining a
// write still running (Disk.FlushRecoveryPoints).
// Entries of logs removed for good (a deleted topic) are dropped by
// Disk.ForgetRecoveryPoints once their directory is gone, so the file does
// not grow with every topic ever created.
type sharedPoints struct {
	d *Disk

	mu        sync.Mutex // guards current, dirty, lastFlush
	current   map[string]RecoveryPoint
	dirty     bool
	lastFlush time.Time

	flushMu  sync.Mutex     // one writer of the file at a time
	flushing sync.WaitGroup // background flushes started by maybeFlush

	loadOnce sync.Once
	loaded   map[string]RecoveryPoint // what the file held at the first open
	loadErr  error
}

// key is dir's name in the shared file (see relativeKey).
func (s *sharedPoints) key(dir string) string {
	if s == nil || s.d == nil {
		return ""
	}
	return relativeKey(s.d.dir, dir)
}

// relativeKey is dir relative to dataDir, or "" when dir is not inside it
// (such a log keeps writing its own checkpoint file). Relative names keep
// the file valid when the data directory is moved or named differently.
func relativeKey(dataDir, dir string) string {
	base := filepath.Clean(dataDir)
	if base != "/" {
		base += "/"
	}
	rel, ok := strings.CutPrefix(filepath.Clean(dir), base)
	if !ok || rel == "" {
		return ""
	}
	return rel
}

// lookup returns the advance the file records for key at generation gen.
// The file is read once, at the first open after a start.
func (s *sharedPoints) lookup(key string, gen uint64) (int64, bool, error) {
	s.load()
	if s.loadErr != nil {
		return 0, false, s.loadErr
	}
	e, ok := s.loaded[key]
	if !ok || e.Generation != gen {
		return 0, false, nil
	}
	return e.Offset, true, nil
}

// load reads the file once. Its entries are carried into every later write
// until their logs record newer ones: a log not opened in this run (a
// partition still loading, a topic the catalog does not list) keeps its
// recovery point rather than losing it at the next flush, which would widen
// its torn-tail window after a crash.
func (s *sharedPoints) load() {
	s.loadOnce.Do(func() {
		var valid bool
		s.loaded, valid, s.loadErr = loadRecoveryPoints(s.d.fs, s.d.dir)
		if s.loadErr == nil && !valid {
			s.d.log.Warn("the shared recovery-point file does not validate; recovery trusts only the logs' own checkpoints",
				"file", join(s.d.dir, RecoveryPointsFileName))
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.current == nil {
			s.current = map[string]RecoveryPoint{}
		}
		for k, e := range s.loaded {
			if _, ok := s.current[k]; !ok {
				s.current[k] = e
			}
		}
	})
}

// record notes that key, at generation gen, has everything below offset
// fsynced.
func (s *sharedPoints) record(key string, gen uint64, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == nil {
		s.current = map[string]RecoveryPoint{}
	}
	s.current[key] = RecoveryPoint{Generation: gen, Offset: offset}
	s.dirty = true
}

// ForgetRecoveryPoints drops the shared file's entries of the logs in dir
// and below it, once their data is removed for good (a deleted topic); the
// next flush writes the file without them. Logs there must be closed: a
// log closing later would record its point again. Safe on a nil Disk.
func (d *Disk) ForgetRecoveryPoints(dir string) {
	s := d.sharedPoints()
	if s == nil {
		return
	}
	prefix := relativeKey(d.dir, dir)
	if prefix == "" {
		return
	}
	// Loaded first, so the file's old entries are in current and go with
	// the rest. loaded itself stays as read: concurrent opens look it up
	// without a lock, and no log opens a removed directory again (topic
	// directories are named by topic id).
	s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	under := func(k string) bool { return k == prefix || strings.HasPrefix(k, prefix+"/") }
	for k := range s.current {
		if under(k) {
			delete(s.current, k)
			s.dirty = true
		}
	}
}

// FlushRecoveryPoints writes the data directory's shared recovery-point
// file now if it holds advances not yet written: after its logs are closed,
// so that their final recovery points are durable and the next start treats
// them as cleanly stopped. Safe on a nil Disk.
func (d *Disk) FlushRecoveryPoints() error {
	s := d.sharedPoints()
	if s == nil {
		return nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.flushing.Wait() // a background flush has unlocked flushMu: let it end
	return s.flushLocked(d.now())
}

// maybeFlush writes the file when it holds unwritten advances and the last
// write is at least interval old. The write runs on a goroutine of its own
// (tracked by flushing, joined by FlushRecoveryPoints): the syncer that
// found it due goes straight back to fsyncing records. Written inline, its
// fsyncs and the directory sync after the rename (which on ext4 commits
// the journal, waiting for other files' dirty data) held up the durable
// waiters of that log for up to 20 ms once a second. A caller finding a
// flush under way returns at once: that flush, once done, writes again if
// an advance came meanwhile and the interval allows, or the next caller
// does.
func (s *sharedPoints) maybeFlush(now time.Time, interval time.Duration) {
	s.mu.Lock()
	due := s.dirty && now.Sub(s.lastFlush) >= interval
	s.mu.Unlock()
	if !due || !s.flushMu.TryLock() {
		return
	}
	s.flushing.Add(1)
	go func() {
		defer s.flushing.Done()
		defer s.flushMu.Unlock()
		for {
			if err := s.flushLocked(now); err != nil {
				s.d.log.Warn("recovery-point file write failed", "err", err)
				return
			}
			now = s.d.now()
			s.mu.Lock()
			again := s.dirty && now.Sub(s.lastFlush) >= interval
			s.mu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// flushLocked writes the file if it is dirty; flushMu must be held.
func (s *sharedPoints) flushLocked(now time.Time) error {
	s.load() // never write a file that forgot what the old one said
	if s.loadErr != nil {
		return fmt.Errorf("logstore: read %s before rewriting it: %w", RecoveryPointsFileName, s.loadErr)
	}
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	snapshot := maps.Clone(s.current)
	s.dirty, s.lastFlush = false, now
	s.mu.Unlock()
	err := s.d.Do(func() error {
		return WriteFileAtomic(s.d.fs, join(s.d.dir, RecoveryPointsFileName), encodeRecoveryPoints(snapshot))
	})
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("logstore: write %s: %w", RecoveryPointsFileName, err)
	}
	return nil
}

func encodeRecoveryPoints(points map[string]RecoveryPoint) []byte {
	keys := make([]string, 0, len(points))
	size := 4 + 4 + 4
	for k := range points {
		keys = append(keys, k)
		size += 2 + len(k) + 16
	}
	sort.Strings(keys) // the same points, the same bytes
	be := binary.BigEndian
	b := make([]byte, 0, size)
	b = append(b, recoveryPointsMagic...)
	b = be.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = be.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
		b = be.AppendUint64(b, points[k].Generation)
		b = be.AppendUint64(b, uint64(points[k].Offset))
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadRecoveryPoints = errors.New("recovery-points file invalid")

func decodeRecoveryPoints(b []byte) (map[string]RecoveryPoint, error) {
	be := binary.BigEndian
	if len(b) < 12 || string(b[:4]) != recoveryPointsMagic {
		return nil, errBadRecoveryPoints
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != be.Uint32(b[len(b)-4:]) {
		return nil, errBadRecoveryPoints
	}
	n := be.Uint32(body[4:])
	rest := body[8:]
	// Each entry takes at least 18 bytes: a count the file cannot hold is
	// refused before it sizes anything.
	if uint64(n)*18 > uint64(len(rest)) {
		return nil, errBadRecoveryPoints
	}
	points := make(map[string]RecoveryPoint, n)
	for range n {
		if len(rest) < 2 {
			return nil, errBadRecoveryPoints
		}
		l := int(be.Uint16(rest))
		if len(rest) < 2+l+16 {
			return nil, errBadRecoveryPoints
		}
		k := string(rest[2 : 2+l])
		e := RecoveryPoint{Generation: be.Uint64(rest[2+l:]), Offset: int64(be.Uint64(rest[2+l+8:]))}
		if e.Offset < 0 {
			return nil, errBadRecoveryPoints
		}
		points[k] = e
		rest = rest[2+l+16:]
	}
	if len(rest) != 0 {
		return nil, errBadRecoveryPoints
	}
	return points, nil
}

// LoadRecoveryPoints reads the shared recovery-point file of dataDir. A
// missing file is no points; so is a file that does not validate (damage a
// rename should have prevented), which only widens the torn-tail window of
// recovery. Only a failure to read is an error.
func LoadRecoveryPoints(fsys FS, dataDir string) (RecoveryPoints, error) {
	entries, _, err := loadRecoveryPoints(fsys, dataDir)
	return RecoveryPoints{dataDir: dataDir, entries: entries}, err
}

func loadRecoveryPoints(fsys FS, dataDir string) (points map[string]RecoveryPoint, valid bool, err error) {
	b, err := ReadFile(fsys, join(dataDir, RecoveryPointsFileName), recoveryPointsMaxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("logstore: read %s: %w", RecoveryPointsFileName, err)
	}
	points, err = decodeRecoveryPoints(b)
	if err != nil {
		return nil, false, nil
	}
	return points, true, nil
}

// For returns the recovery point the shared file records for the log in
// dir at checkpoint generation gen.
func (p RecoveryPoints) For(dir string, gen uint64) (int64, bool) {
	if p.entries == nil {
		return 0, false
	}
	e, ok := p.entries[relativeKey(p.dataDir, dir)]
	if !ok || e.Generation != gen {
		return 0, false
	}
	return e.Offset, true
}

// Has reports whether the shared file has an entry for the log in dir, at
// any generation.
func (p RecoveryPoints) Has(dir string) bool {
	_, ok := p.entries[relativeKey(p.dataDir, dir)]
	return ok
}
