//go:build !race

package logstore

const raceDetector = false
