package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/idem-dev/idem/internal/admin/api"
)

// The lab pages: /lab (the form and the runs), /lab/runs/{id} (a run:
// progress while it runs, refreshed by the page itself, then its table and
// chart). The runs are the admin API's (api.Service's lab methods).

// labReportTemplate defines "lab-report", a run's table and chart, which
// the run page and the delivery page both draw; every page can use it.
const labReportTemplate = "templates/lab-report.html"

// labRunView is a run as its page and the delivery page draw it.
type labRunView struct {
	api.LabRun
	Summary   api.LabReportSummary
	HasReport bool
	// Percent is how far the run is, over every mode (effects settled).
	Percent int
}

func newLabRunView(run api.LabRun) labRunView {
	v := labRunView{LabRun: run}
	v.Summary, v.HasReport = run.Summary()
	if p := run.Progress; p != nil && p.Modes > 0 && p.Events > 0 {
		done := (p.ModeNum-1)*p.Events + min(p.Effected, p.Events)
		v.Percent = 100 * done / (p.Modes * p.Events)
	}
	return v
}

// labPage is /lab's data: the form's values and the runs.
type labPage struct {
	Form api.LabSpec
	Runs []labRunView
	Busy bool
}

func (c *Console) labRuns(w http.ResponseWriter, r *http.Request, status int, form api.LabSpec, problem *api.Problem) {
	runs, err := c.cfg.API.ListLabRuns()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	lp := labPage{Form: form}
	for _, run := range runs {
		lp.Runs = append(lp.Runs, newLabRunView(run))
		lp.Busy = lp.Busy || run.Status == api.LabRunning
	}
	c.render(w, r, status, "lab", page{Title: "Lab", Nav: "lab", Error: problem, Data: lp})
}

// labForm is the form's default: a run of a few seconds.
var labForm = api.LabSpec{Scenario: "charge", Modes: "all", Faults: "lost-ack,ack-timeout,consumer-crash", Events: 100, Duration: "1m"}

func (c *Console) lab(w http.ResponseWriter, r *http.Request) {
	c.labRuns(w, r, http.StatusOK, labForm, nil)
}

// labStart handles the form: a redirect to the new run's page, or the
// form again with the problem (a field the lab refused, a run going on).
func (c *Console) labStart(w http.ResponseWriter, r *http.Request) {
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
	f := r.PostForm
	spec := api.LabSpec{Scenario: strings.TrimSpace(f.Get("scenario")), Modes: strings.TrimSpace(f.Get("modes")),
		Faults: strings.TrimSpace(f.Get("faults")), Duration: strings.TrimSpace(f.Get("duration"))}
	var formErr *api.Problem
	if v := strings.TrimSpace(f.Get("events")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			formErr = &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: "events: a whole number of events per mode, not " + strconv.Quote(v)}
		}
		spec.Events = n
	}
	if v := strings.TrimSpace(f.Get("seed")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			formErr = &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: "seed: a whole number, not " + strconv.Quote(v)}
		}
		spec.Seed = &n
	}
	if formErr != nil {
		c.labRuns(w, r, formErr.Status, spec, formErr)
		return
	}
	user, pass, _ := r.BasicAuth()
	run, err := c.cfg.API.StartLabRun(r.Context(), cn, user, pass, spec)
	if err != nil {
		p := api.AsProblem(err)
		c.labRuns(w, r, p.Status, spec, p)
		return
	}
	http.Redirect(w, r, "/lab/runs/"+url.PathEscape(run.ID), http.StatusSeeOther)
}

func (c *Console) labRun(w http.ResponseWriter, r *http.Request) {
	run, err := c.cfg.API.LabRun(r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := page{Title: "Lab run " + run.ID, Nav: "lab", Data: newLabRunView(run)}
	if run.Status == api.LabRunning {
		p.Refresh = 1 // the page follows the run without a script
	}
	c.render(w, r, http.StatusOK, "lab-run", p)
}

func (c *Console) labChart(w http.ResponseWriter, r *http.Request) {
	svg, err := c.cfg.API.LabRunChart(r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(svg)
}

// labCancel handles the run page's Cancel button.
func (c *Console) labCancel(w http.ResponseWriter, r *http.Request) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if _, err := c.cfg.API.CancelLabRun(r.Context(), cn, id); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/lab/runs/"+url.PathEscape(id)+"?done="+url.QueryEscape("Run cancelled."), http.StatusSeeOther)
}
