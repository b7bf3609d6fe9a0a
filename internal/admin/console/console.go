// Package console is the broker's web console, served at / on the admin
// address: server-rendered pages (html/template, embedded with go:embed),
// one small embedded stylesheet, no JavaScript, nothing fetched from
// elsewhere. A console that needs no build step and no CDN works on an
// air-gapped host and cannot break when a third party changes.
//
// Every page is drawn from the admin API's Go methods (package api), the
// same operations /v1 serves, run as the HTTP Basic user; so the console
// shows what that user may see and does only what that user may do. The
// overview and the delivery contract page also read the broker's
// Prometheus registry, in process.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idem-dev/idem/internal/admin/api"
)

//go:embed templates/*.html static/*
var files embed.FS

// Config configures New.
type Config struct {
	API      *api.Service
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// LagSampleEvery is how often every group's lag is sampled for the
	// group page's chart (default 10 s; negative: never).
	LagSampleEvery time.Duration
}

// Console serves the pages.
type Console struct {
	cfg   Config
	pages map[string]*template.Template

	mu   sync.Mutex
	last *sample // the previous overview's counters, for rates

	lag       lagHistory
	stopLag   context.CancelFunc
	lagDone   chan struct{} // closed when the sampler has stopped
	closeOnce sync.Once
}

var funcs = template.FuncMap{
	"path":  url.PathEscape,
	"query": url.QueryEscape,
	"bytes": humanBytes,
	"ms": func(ms int64) string {
		return (time.Duration(ms) * time.Millisecond).Round(time.Millisecond).String()
	},
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 UTC") },
	"join": func(v []int32) string {
		s := make([]string, len(v))
		for i, p := range v {
			s[i] = strconv.Itoa(int(p))
		}
		return strings.Join(s, ", ")
	},
	"add":   func(a, b int64) int64 { return a + b },
	"sub":   func(a, b int64) int64 { return a - b },
	"int64": func(f float64) int64 { return int64(f) },
	// deref and deref64 read the lab report's optional values.
	"deref":   func(b *bool) bool { return b != nil && *b },
	"deref64": func(n *int64) int64 { return *n },
	"filter":  newFilterBox,
}

// New parses the templates (a broken template fails here, at start).
func New(cfg Config) (*Console, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LagSampleEvery == 0 {
		cfg.LagSampleEvery = 10 * time.Second
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}, lagDone: make(chan struct{})}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	// Files named _*.html hold templates several pages share (the
	// pager, the field errors); every page is parsed with them.
	partials, err := fs.Glob(files, "templates/_*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" || n == labReportTemplate || slices.Contains(partials, n) {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, append([]string{"templates/layout.html", labReportTemplate, n}, partials...)...)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	ctx, stop := context.WithCancel(context.Background())
	c.stopLag = stop
	go func() {
		defer close(c.lagDone)
		if cfg.Gatherer != nil && cfg.LagSampleEvery > 0 {
			c.sampleLag(ctx, cfg.LagSampleEvery)
		}
	}()
	return c, nil
}

// Close stops the lag sampler and waits for it.
func (c *Console) Close() {
	c.closeOnce.Do(c.stopLag)
	<-c.lagDone
}

// Handler serves the console's pages and its stylesheet.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /{$}", c.overview)
	mux.HandleFunc("GET /topics", c.topics)
	mux.HandleFunc("GET /topics/{name}", c.topic)
	mux.HandleFunc("GET /topics/{name}/partitions/{partition}", c.messages)
	mux.HandleFunc("GET /topics/{name}/partitions/{partition}/messages/{offset}", c.message)
	mux.HandleFunc("GET /groups", pagedPage(c, groupsList))
	mux.HandleFunc("GET /groups/{id}", detailPage(c, "group", "groups", c.groupData, func(g groupPage) string { return "Group " + g.Group }))
	mux.HandleFunc("POST /groups/{id}/reset", c.reset)
	mux.HandleFunc("GET /transactions", pagedPage(c, transactionsList))
	mux.HandleFunc("POST /transactions/{id}/abort", c.abort)
	mux.HandleFunc("GET /share-groups", pagedPage(c, shareGroupsList))
	mux.HandleFunc("GET /delivery", c.delivery)
	// The forms that create, alter, produce to and delete (forms.go).
	mux.HandleFunc("POST /topics", c.createTopic)
	mux.HandleFunc("POST /topics/{name}/delete", c.deleteTopic)
	mux.HandleFunc("POST /topics/{name}/configs", c.alterConfig)
	mux.HandleFunc("POST /topics/{name}/partitions/{partition}/produce", c.produce)
	mux.HandleFunc("POST /groups/{id}/delete", c.deleteGroup)
	// Share-group detail, dead letters and their redrive (dlq.go).
	mux.HandleFunc("GET /share-groups/{id}", c.shareGroup)
	mux.HandleFunc("GET /dead-letters", listPage(c, "dlq", "Dead letters", "dlq", c.cfg.API.DeadLetterTopics))
	mux.HandleFunc("GET /dead-letters/{topic}", detailPage(c, "dlq-records", "dlq", c.deadLetterData, func(d deadLetterPage) string { return "Dead letters of " + d.Topic }))
	mux.HandleFunc("POST /dead-letters/{topic}/redrive", c.redrive)
	// The lab runs (lab.go).
	mux.HandleFunc("GET /lab", c.lab)
	mux.HandleFunc("POST /lab/runs", c.labStart)
	mux.HandleFunc("GET /lab/runs/{id}", c.labRun)
	mux.HandleFunc("GET /lab/runs/{id}/chart.svg", c.labChart)
	mux.HandleFunc("POST /lab/runs/{id}/cancel", c.labCancel)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, &api.Problem{Title: "Not Found", Status: http.StatusNotFound, Detail: "no page at " + r.URL.Path})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		mux.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	Nav    string // the section highlighted in the navigation
	Notice string // a message after a redirect (?done=…)
	Error  *api.Problem
	Data   any
	// Refresh, if not 0, reloads the page every so many seconds (a lab
	// run's progress, without a script).
	Refresh int
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	if p.Notice == "" {
		p.Notice = r.URL.Query().Get("done")
	}
	var buf strings.Builder
	if err := t.Execute(&buf, p); err != nil {
		c.cfg.Logger.Error("console template", "page", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(buf.String()))
}

// fail draws the error page with the problem's status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := api.AsProblem(err)
	c.render(w, r, p.Status, "error", page{Title: p.Title, Error: p})
}

// conn is the API connection of the request's user.
func (c *Console) conn(r *http.Request) (*api.Conn, error) {
	user, pass, _ := r.BasicAuth()
	return c.cfg.API.Conn(user, pass)
}

// listPage serves a page drawn from one Service call as the request's
// user: the call's error becomes the error page (with its status), its
// result the template's data.
func listPage[T any](c *Console, name, title, nav string, get func(context.Context, *api.Conn) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cn, err := c.conn(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		data, err := get(r.Context(), cn)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusOK, name, page{Title: title, Nav: nav, Data: data})
	}
}

// detailPage serves page name drawn from one lookup as the request's
// user: the page of one thing (a group, a dead-letter topic), where
// listPage serves a list.
func detailPage[T any](c *Console, name, nav string, get func(*http.Request, *api.Conn) (T, error), title func(T) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cn, err := c.conn(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		data, err := get(r, cn)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, http.StatusOK, name, page{Title: title(data), Nav: nav, Data: data})
	}
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx := r.Context()
	cluster, err := c.cfg.API.Cluster(ctx, cn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	topics, err := c.cfg.API.Topics(ctx, cn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	groups, err := c.cfg.API.Groups(ctx, cn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	type overview struct {
		Cluster                    api.ClusterInfo
		Topics, Partitions, Groups int
		InternalTopics             int
		Records, SizeBytes         int64
		Metrics                    overviewMetrics
	}
	o := overview{Cluster: cluster, Groups: len(groups)}
	for _, t := range topics {
		if t.Internal {
			o.InternalTopics++
			continue
		}
		o.Topics++
		o.Partitions += t.Partitions
		o.Records += t.Records
		o.SizeBytes += t.SizeBytes
	}
	o.Metrics = c.overviewMetrics()
	c.render(w, r, http.StatusOK, "overview", page{Title: "Overview", Nav: "overview", Data: o})
}

func (c *Console) topic(w http.ResponseWriter, r *http.Request) {
	c.drawTopic(w, r, http.StatusOK, form{}, nil)
}

func (c *Console) messages(w http.ResponseWriter, r *http.Request) {
	c.drawMessages(w, r, http.StatusOK, form{}, nil)
}

// drawMessages draws a partition's messages with status, the produce
// form f and the problem p (nil on a plain GET).
func (c *Console) drawMessages(w http.ResponseWriter, r *http.Request, status int, f form, p *api.Problem) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Get("limit") == "" {
		q.Set("limit", "20")
	}
	req, err := api.ParseMessagesRequest(r.PathValue("name"), r.PathValue("partition"), q)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pg, err := c.cfg.API.Messages(r.Context(), cn, req)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	type browser struct {
		api.MessagesPage
		PrevOffset int64
		HasPrev    bool
		HasNext    bool
		Form       form
	}
	b := browser{MessagesPage: pg, PrevOffset: max(pg.StartOffset-int64(pg.Limit), pg.LogStartOffset)}
	b.HasPrev = pg.StartOffset > pg.LogStartOffset
	b.HasNext = pg.NextOffset < pg.HighWatermark
	b.Form = f
	c.render(w, r, status, "messages", page{Title: fmt.Sprintf("%s / partition %d", pg.Topic, pg.Partition), Nav: "topics", Error: p, Data: b})
}

func (c *Console) message(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	req, err := api.ParseMessagesRequest(r.PathValue("name"), r.PathValue("partition"),
		url.Values{"offset": {r.PathValue("offset")}, "limit": {"1"}})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pg, err := c.cfg.API.Messages(r.Context(), cn, req)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(pg.Messages) == 0 || pg.Messages[0].Offset != *req.Offset {
		c.fail(w, r, &api.Problem{Title: "Not Found", Status: http.StatusNotFound,
			Detail: fmt.Sprintf("no record at offset %d of %s-%d (log start %d, high watermark %d)", *req.Offset, pg.Topic, pg.Partition, pg.LogStartOffset, pg.HighWatermark)})
		return
	}
	type one struct {
		Topic string
		api.Message
	}
	c.render(w, r, http.StatusOK, "message", page{Title: fmt.Sprintf("%s-%d @ %d", pg.Topic, pg.Partition, *req.Offset), Nav: "topics",
		Data: one{Topic: pg.Topic, Message: pg.Messages[0]}})
}

// groupPage is the group page's data: the group, and the topics its reset
// form offers.
type groupPage struct {
	api.GroupDetail
	Topics   []string
	Form     form          // the delete form as last submitted
	LagChart template.HTML // total lag over time (laghistory.go)
}

func (c *Console) groupData(r *http.Request, cn *api.Conn) (groupPage, error) {
	g, err := c.cfg.API.Group(r.Context(), cn, r.PathValue("id"))
	if err != nil {
		return groupPage{}, err
	}
	gp := groupPage{GroupDetail: g, LagChart: lagChart(g.Group, c.lag.of(g.Group))}
	for _, o := range g.Offsets {
		if !slices.Contains(gp.Topics, o.Topic) {
			gp.Topics = append(gp.Topics, o.Topic)
		}
	}
	return gp, nil
}

// reset handles the reset form: on success it redirects to the group page
// (POST, redirect, GET); on failure it draws the group page again with the
// problem and its status.
func (c *Console) reset(w http.ResponseWriter, r *http.Request) {
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
	req := api.ResetOffsetsRequest{To: r.PostForm.Get("to"), Topic: r.PostForm.Get("topic")}
	var formErr error
	switch req.To {
	case "offset":
		o, err := strconv.ParseInt(strings.TrimSpace(r.PostForm.Get("offset")), 10, 64)
		if err != nil {
			formErr = errors.New("the offset must be a whole number")
		}
		req.Offset = &o
	case "timestamp":
		at, err := time.Parse("2006-01-02T15:04", r.PostForm.Get("timestamp"))
		if err != nil {
			at, err = time.Parse("2006-01-02T15:04:05", r.PostForm.Get("timestamp"))
		}
		if err != nil {
			formErr = errors.New("the time must be a date and time (UTC)")
		}
		ms := at.UnixMilli()
		req.Timestamp = &ms
	}
	var res api.ResetResult
	if formErr != nil {
		err = &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: formErr.Error()}
	} else {
		res, err = c.cfg.API.ResetOffsets(r.Context(), cn, r.PathValue("id"), req)
	}
	if err != nil {
		p := api.AsProblem(err)
		gp, gerr := c.groupData(r, cn)
		if gerr != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, r, p.Status, "group", page{Title: "Group " + gp.Group, Nav: "groups", Error: p, Data: gp})
		return
	}
	done := fmt.Sprintf("Offsets of %d partitions reset to %s.", len(res.Offsets), req.To)
	http.Redirect(w, r, "/groups/"+url.PathEscape(r.PathValue("id"))+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

// abort handles a transaction's Abort button: a redirect to the list on
// success, the list with the problem and its status otherwise.
func (c *Console) abort(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	tx, err := c.cfg.API.AbortTransaction(r.Context(), cn, id)
	if err != nil {
		p := api.AsProblem(err)
		drawPaged(c, w, r, p.Status, p, form{}, transactionsList)
		return
	}
	done := fmt.Sprintf("Transaction %s aborted (%s); its producer is fenced.", id, tx.State)
	http.Redirect(w, r, "/transactions?done="+url.QueryEscape(done), http.StatusSeeOther)
}

func (c *Console) delivery(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	txns, err := c.cfg.API.CountTransactions(r.Context(), cn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := c.deliveryMetrics()
	d.TxnOpen, d.TxnCommitted, d.TxnAborted, d.TxnHanging = txns.Open, txns.Committed, txns.Aborted, txns.Hanging
	// The lab's table and chart of its latest run beside the counters.
	type deliveryPage struct {
		deliveryMetrics
		Lab *labRunView
	}
	dp := deliveryPage{deliveryMetrics: d}
	if run, ok := c.cfg.API.LatestLabRun(); ok {
		v := newLabRunView(run)
		dp.Lab = &v
	}
	c.render(w, r, http.StatusOK, "delivery", page{Title: "Delivery contract", Nav: "delivery", Data: dp})
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
