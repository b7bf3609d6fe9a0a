package api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// MaxListLimit bounds one page of GET /v1/topics and /v1/groups (and of
// the console's lists): a larger limit is a 400, so a client learns the
// bound instead of receiving fewer rows than it asked for without knowing why.
const MaxListLimit = 1000

// ListOptions selects one page of a list sorted by name. Kafka has no
// server-side paging, so every name is still listed; what paging saves is
// the per-row work (offsets, sizes, lag), done only for the page's rows.
type ListOptions struct {
	// Contains keeps the names containing it, ignoring case.
	Contains string
	// After is the cursor: only names sorted after it (the last name of
	// the previous page).
	After string
	// Skip drops this many names after Contains and After apply (the
	// console's numbered pages).
	Skip int
	// Limit is the most rows returned; 0 returns them all.
	Limit int
}

// ListPage is one page of a list and where it sits in the whole.
type ListPage[T any] struct {
	Items []T
	// Matching is how many names pass Contains and After, on every page.
	Matching int
}

// ParseListOptions reads limit, after and contains from a query; a limit
// that is not an integer in 1..MaxListLimit is a 400 problem.
func ParseListOptions(q url.Values) (ListOptions, error) {
	opts := ListOptions{After: q.Get("after"), Contains: q.Get("contains")}
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > MaxListLimit {
			return opts, badRequest("limit must be an integer from 1 to %d, not %q", MaxListLimit, v)
		}
		opts.Limit = l
	}
	return opts, nil
}

// page applies opts to names (sorted here) and returns the page's names
// and how many matched.
func (opts ListOptions) page(names []string) (selected []string, matching int) {
	names = slices.Sorted(slices.Values(names))
	needle := strings.ToLower(opts.Contains)
	var kept []string
	for _, n := range names {
		if opts.After != "" && n <= opts.After {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(n), needle) {
			continue
		}
		kept = append(kept, n)
	}
	matching = len(kept)
	kept = kept[min(max(opts.Skip, 0), len(kept)):]
	if opts.Limit > 0 && len(kept) > opts.Limit {
		kept = kept[:opts.Limit]
	}
	return kept, matching
}
