package share

import (
	"cmp"
	"iter"
	"maps"
	"slices"
)

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

func sortedKeysFunc[K comparable, V any](m map[K]V, cmpFn func(a, b K) int) []K {
	return slices.SortedFunc(maps.Keys(m), cmpFn)
}

func mapValues[K comparable, V any](m map[K]V) iter.Seq[V] { return maps.Values(m) }
