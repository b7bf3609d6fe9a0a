//go:build race

package logstore

// raceDetector: the race detector slows the crash tests' thousands of
// recoveries tenfold, so they run fewer seeds under it.
const raceDetector = true
