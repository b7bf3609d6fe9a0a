package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// labRoutes are /v1/lab/runs: `idem lab` started, watched, read and
// cancelled over HTTP (labruns.go runs them).
var labRoutes = []Route{
	{"POST", "/v1/lab/runs", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var spec LabSpec
		if err := decode(r, &spec); err != nil {
			return 0, nil, err
		}
		user, pass, _ := r.BasicAuth()
		v, err := s.StartLabRun(ctx, c, user, pass, spec)
		return http.StatusCreated, v, err
	}},
	{"GET", "/v1/lab/runs", func(s *Service, _ context.Context, _ *Conn, _ *http.Request) (int, any, error) {
		v, err := s.ListLabRuns()
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/lab/runs/{id}", func(s *Service, _ context.Context, _ *Conn, r *http.Request) (int, any, error) {
		v, err := s.LabRun(r.PathValue("id"))
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/lab/runs/{id}/chart.svg", func(s *Service, _ context.Context, _ *Conn, r *http.Request) (int, any, error) {
		svg, err := s.LabRunChart(r.PathValue("id"))
		return http.StatusOK, rawBody{contentType: "image/svg+xml", body: svg}, err
	}},
	{"DELETE", "/v1/lab/runs/{id}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		v, err := s.CancelLabRun(ctx, c, r.PathValue("id"))
		return http.StatusOK, v, err
	}},
}

// rawBody is an answer that is not JSON (the chart).
type rawBody struct {
	contentType string
	body        []byte
}

// labManager is the lab run manager, or 503 when the server has none.
func (s *Service) labManager() (*LabRuns, error) {
	if s.cfg.Lab == nil {
		return nil, problem(http.StatusServiceUnavailable, "lab runs are not available on this server")
	}
	return s.cfg.Lab, nil
}

// StartLabRun starts `idem lab` as the user of c (user and password are
// the admin server's Basic credentials, ignored without them). A run
// creates topics and groups and loads the machine, so it needs ALTER on the
// CLUSTER resource (granted to everyone when the broker has no authorizer),
// checked before anything starts; the run itself then connects as the same
// user, so the broker's ACLs apply to each of its requests too.
func (s *Service) StartLabRun(ctx context.Context, c *Conn, user, password string, spec LabSpec) (LabRun, error) {
	m, err := s.labManager()
	if err != nil {
		return LabRun{}, err
	}
	if err := mayAlterCluster(ctx, c); err != nil {
		return LabRun{}, err
	}
	if !s.cfg.Credentials {
		user, password = "", ""
	}
	run, err := m.Start(spec, user, password)
	return run, labProblem(err)
}

// ListLabRuns lists the remembered runs, newest first.
func (s *Service) ListLabRuns() ([]LabRun, error) {
	m, err := s.labManager()
	if err != nil {
		return nil, err
	}
	return m.List(), nil
}

// LabRun is one run: its status, progress while it runs, report when done.
func (s *Service) LabRun(id string) (LabRun, error) {
	m, err := s.labManager()
	if err != nil {
		return LabRun{}, err
	}
	run, err := m.Get(id)
	return run, labProblem(err)
}

// LatestLabRun is the newest run with a report, for the delivery page.
func (s *Service) LatestLabRun() (LabRun, bool) {
	if s.cfg.Lab == nil {
		return LabRun{}, false
	}
	return s.cfg.Lab.Latest()
}

// LabRunChart is the report's SVG bar chart (lost, duplicate deliveries,
// duplicate effects per mode), as `idem lab --chart` writes it.
func (s *Service) LabRunChart(id string) ([]byte, error) {
	run, err := s.LabRun(id)
	if err != nil {
		return nil, err
	}
	if run.Chart == "" {
		return nil, conflict("lab run %s has no report (it is %s)", id, run.Status)
	}
	return []byte(run.Chart), nil
}

// CancelLabRun stops a run going on and waits (within the request's time)
// for its processes to be gone; it needs what starting one needs.
func (s *Service) CancelLabRun(ctx context.Context, c *Conn, id string) (LabRun, error) {
	m, err := s.labManager()
	if err != nil {
		return LabRun{}, err
	}
	if err := mayAlterCluster(ctx, c); err != nil {
		return LabRun{}, err
	}
	run, err := m.Cancel(ctx, id)
	return run, labProblem(err)
}

// mayAlterCluster asks the broker, as c's user, whether that user may
// ALTER the cluster (DescribeCluster with the authorized operations).
func mayAlterCluster(ctx context.Context, c *Conn) error {
	req := kmsg.NewPtrDescribeClusterRequest()
	req.IncludeClusterAuthorizedOperations = true
	resp, err := req.RequestWith(ctx, c.Client)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	if !slices.Contains(kadm.DecodeACLOperations(resp.ClusterAuthorizedOperations), kmsg.ACLOperationAlter) {
		return problem(http.StatusForbidden, "lab runs need ALTER on the CLUSTER resource (they create topics and groups and load the machine)")
	}
	return nil
}

// labProblem gives the manager's errors their status.
func labProblem(err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := errors.AsType[*labFieldError](err); ok {
		return badRequest("%s", fe.Error())
	}
	switch {
	case errors.Is(err, errLabNotFound):
		return notFound("%v", err)
	case errors.Is(err, errLabBusy), errors.Is(err, errLabFinished):
		return conflict("%v", err)
	case errors.Is(err, errLabNoExecutable), errors.Is(err, errLabNoTarget), errors.Is(err, errLabClosed):
		return problem(http.StatusServiceUnavailable, err.Error())
	}
	return err
}
