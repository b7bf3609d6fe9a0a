package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/dlq"
)

// Share-group detail and dead letters: the pages over the API's
// ShareGroup, DeadLetterTopics, DeadLetters and Redrive.

// sharePartitionRow is a share partition with its in-flight window, which
// only the broker's metrics have (no Kafka API tells it).
type sharePartitionRow struct {
	api.SharePartition
	Acquired, Available, Acknowledged, Archived int64
	// Deliveries is the in-flight records by delivery count: "1:40 2:3".
	Deliveries string
}

type shareGroupPage struct {
	api.ShareGroupDetail
	Partitions []sharePartitionRow
	// Held is the records each member holds now, by member id.
	Held map[string]int64
	// HasMetrics: the in-flight columns come from the registry.
	HasMetrics bool
}

func (c *Console) shareGroup(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	g, err := c.cfg.API.ShareGroup(r.Context(), cn, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := shareGroupPage{ShareGroupDetail: g, Held: map[string]int64{}}
	mfs := c.gather()
	_, p.HasMetrics = mfs["idem_share_partition_records"]
	key := func(topic, partition string) string { return topic + "\x00" + partition }
	states := map[string]map[string]int64{}
	if mf, ok := mfs["idem_share_partition_records"]; ok {
		for _, m := range mf.GetMetric() {
			if label(m, "group") != g.Group {
				continue
			}
			k := key(label(m, "topic"), label(m, "partition"))
			if states[k] == nil {
				states[k] = map[string]int64{}
			}
			states[k][label(m, "state")] += int64(m.GetGauge().GetValue())
		}
	}
	deliveries := map[string]map[int]int64{}
	if mf, ok := mfs["idem_share_partition_in_flight_deliveries"]; ok {
		for _, m := range mf.GetMetric() {
			n, err := strconv.Atoi(label(m, "deliveries"))
			if label(m, "group") != g.Group || err != nil || m.GetGauge().GetValue() <= 0 {
				continue
			}
			k := key(label(m, "topic"), label(m, "partition"))
			if deliveries[k] == nil {
				deliveries[k] = map[int]int64{}
			}
			deliveries[k][n] += int64(m.GetGauge().GetValue())
		}
	}
	if mf, ok := mfs["idem_share_member_acquired_records"]; ok {
		for _, m := range mf.GetMetric() {
			if label(m, "group") == g.Group {
				p.Held[label(m, "member")] += int64(m.GetGauge().GetValue())
			}
		}
	}
	for _, sp := range g.Partitions {
		k := key(sp.Topic, strconv.Itoa(int(sp.Partition)))
		row := sharePartitionRow{SharePartition: sp, Acquired: states[k]["acquired"], Available: states[k]["available"],
			Acknowledged: states[k]["acknowledged"], Archived: states[k]["archived"], Deliveries: "–"}
		if d := deliveries[k]; len(d) > 0 {
			counts := make([]int, 0, len(d))
			for n := range d {
				counts = append(counts, n)
			}
			slices.Sort(counts)
			parts := make([]string, len(counts))
			for i, n := range counts {
				parts[i] = fmt.Sprintf("%d:%d", n, d[n])
			}
			row.Deliveries = strings.Join(parts, " ")
		}
		p.Partitions = append(p.Partitions, row)
	}
	c.render(w, r, http.StatusOK, "share-group", page{Title: "Share group " + g.Group, Nav: "share", Data: p})
}

// deadLetterPage is a page of a dead-letter topic's records, with the
// topics the redrive form offers as targets.
type deadLetterPage struct {
	dlq.Page
	Targets []string
}

func (c *Console) deadLetterData(r *http.Request, cn *api.Conn) (deadLetterPage, error) {
	q := r.URL.Query()
	if q.Get("limit") == "" {
		q.Set("limit", "20")
	}
	opts, err := api.ParseDeadLettersRequest(q)
	if err != nil {
		return deadLetterPage{}, err
	}
	pg, err := c.cfg.API.DeadLetters(r.Context(), cn, r.PathValue("topic"), opts)
	if err != nil {
		return deadLetterPage{}, err
	}
	d := deadLetterPage{Page: pg}
	if topics, err := c.cfg.API.Topics(r.Context(), cn); err == nil {
		for _, t := range topics {
			if !t.Internal && t.Name != pg.Topic && !strings.HasPrefix(t.Name, "idem.redrive.") {
				d.Targets = append(d.Targets, t.Name)
			}
		}
	}
	return d, nil
}

// redrive handles the Redrive form: a redirect to the records (POST,
// redirect, GET) with the run's counts; on failure the records page again
// with the problem and its status (409 while another redrive runs).
// Cross-site posts are refused before this runs (admin.go's
// CrossOriginProtection), as for the other forms.
func (c *Console) redrive(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: err.Error()})
		return
	}
	topic := r.PathValue("topic")
	req := api.RedriveRequest{Target: r.PostForm.Get("target")}
	var res api.RedriveResult
	if v := strings.TrimSpace(r.PostForm.Get("limit")); v != "" {
		n, convErr := strconv.Atoi(v)
		if convErr != nil {
			err = &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: "the limit must be a whole number"}
		}
		req.Limit = &n
	}
	if err == nil {
		res, err = c.cfg.API.Redrive(r.Context(), cn, topic, req)
	}
	if err != nil {
		p := api.AsProblem(err)
		d, derr := c.deadLetterData(r, cn)
		if derr != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, p.Status, "dlq-records", page{Title: "Dead letters of " + topic, Nav: "dlq", Error: p, Data: d})
		return
	}
	done := fmt.Sprintf("Redrive of %s: %d moved, %d already moved before, %d left past the limit, %d gone from their source.",
		topic, res.Redriven, res.Already, res.Left, res.Gone)
	http.Redirect(w, r, "/dead-letters/"+url.PathEscape(topic)+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}
