package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/admin/api"
)

// TestTopicAndGroupListsArePagedByCursor: GET /v1/topics and /v1/groups
// answer pages of limit rows after the cursor, sorted by name, filtered by
// contains; walking the pages yields every name once; a limit outside
// 1..MaxListLimit is a 400 problem; without a limit every row is answered.
func TestTopicAndGroupListsArePagedByCursor(t *testing.T) {
	b := brokertest.Run(t, broker.WithProperty("num.partitions", "1"))
	adm := kadm.NewClient(b.Client(t))
	var topics, groups []string
	for i := range 7 {
		topics = append(topics, fmt.Sprintf("page-%02d", i))
		groups = append(groups, fmt.Sprintf("team-%02d", i))
	}
	topics = append(topics, "other")
	if _, err := adm.CreateTopics(ctx(t), 1, -1, nil, topics...); err != nil {
		t.Fatal(err)
	}
	for _, g := range append(slices.Clone(groups), "solo") {
		// A commit with no member makes an Empty group, as in Kafka.
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: "other", Partition: 0, At: 0, LeaderEpoch: -1})
		if resp, err := adm.CommitOffsets(ctx(t), g, offsets); err != nil || resp.Error() != nil {
			t.Fatalf("commit for %s: %v %v", g, err, resp.Error())
		}
	}
	c := newClient(t, b)

	walk := func(path, contains string, limit int, name func(i int, v []map[string]any) string) (names []string, pages int) {
		t.Helper()
		after := ""
		for {
			q := url.Values{"limit": {fmt.Sprint(limit)}, "contains": {contains}}
			if after != "" {
				q.Set("after", after)
			}
			var page []map[string]any
			c.must(http.StatusOK, "GET", path+"?"+q.Encode(), nil, &page)
			pages++
			if len(page) > limit {
				t.Fatalf("%s: %d rows for limit %d", path, len(page), limit)
			}
			for i := range page {
				names = append(names, name(i, page))
			}
			if len(page) < limit {
				return names, pages
			}
			after = names[len(names)-1]
			if pages > 10 {
				t.Fatalf("%s: still paging after %d pages: %q", path, pages, names)
			}
		}
	}
	topicName := func(i int, v []map[string]any) string { return v[i]["name"].(string) }
	groupName := func(i int, v []map[string]any) string { return v[i]["group"].(string) }

	got, pages := walk("/v1/topics", "PAGE-", 3, topicName)
	if !slices.Equal(got, topics[:7]) || pages != 3 {
		t.Errorf("topics containing page-, 3 a page: %q in %d pages, want %q in 3", got, pages, topics[:7])
	}
	got, pages = walk("/v1/groups", "team", 2, groupName)
	if !slices.Equal(got, groups) || pages != 4 {
		t.Errorf("groups containing team, 2 a page: %q in %d pages, want %q in 4", got, pages, groups)
	}

	var all []api.TopicSummary
	c.must(http.StatusOK, "GET", "/v1/topics", nil, &all)
	if len(all) < len(topics) {
		t.Errorf("without a limit: %d topics, want at least %d", len(all), len(topics))
	}
	var groupPage []api.GroupSummary
	c.must(http.StatusOK, "GET", "/v1/groups?after=team-05", nil, &groupPage)
	if len(groupPage) != 1 || groupPage[0].Group != "team-06" || groupPage[0].State != "Empty" {
		t.Errorf("groups after team-05: %+v, want team-06 alone, Empty", groupPage)
	}
	c.must(http.StatusOK, "GET", fmt.Sprintf("/v1/topics?limit=%d", api.MaxListLimit), nil, &all)

	for _, path := range []string{"/v1/topics", "/v1/groups", "/v1/transactions", "/v1/share-groups"} {
		for _, limit := range []string{"0", "-1", "ten", fmt.Sprint(api.MaxListLimit + 1), "99999999999999999999"} {
			p := c.refused(http.StatusBadRequest, "GET", path+"?limit="+limit, nil)
			if p.Detail == "" {
				t.Errorf("%s?limit=%s: a problem without detail", path, limit)
			}
		}
	}
}
