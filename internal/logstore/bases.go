package logstore

// SegmentBases returns the base offsets of the log's segments, ascending;
// the last is the active segment's. DeleteBefore removes every segment below
// its offset before one directory sync, so a power loss can keep an older
// segment and lose a newer one; a caller deleting a long prefix can avoid
// that gap by calling DeleteBefore at each base in turn.
func (l *Log) SegmentBases() []int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]int64, len(l.segs))
	for i, s := range l.segs {
		out[i] = s.base
	}
	return out
}
