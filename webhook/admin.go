package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// AdminHandler serves the dispatcher's operations as a JSON API, the same
// operations as the idem webhooks commands:
//
//	GET  /v1/webhooks/endpoints                    list (secrets left out)
//	POST /v1/webhooks/endpoints                    add: EndpointSpec as JSON → 201 {endpoint, secret}
//	GET  /v1/webhooks/endpoints/{id}
//	POST /v1/webhooks/endpoints/{id}/disable       {"reason": …}
//	POST /v1/webhooks/endpoints/{id}/enable
//	POST /v1/webhooks/endpoints/{id}/rotate-secret {"secret": …, "overlap": "24h"} → {secret}
//	GET  /v1/webhooks/deliveries?endpoint=&message=&status=&limit=
//	GET  /v1/webhooks/attempts?endpoint=&message=&outcome=&since=&limit=
//	POST /v1/webhooks/replay                       {"message_id", "endpoint_id", "dead_only", "since"} → {replayed}
//
// Errors are application/problem+json. The API has no authentication of
// its own: serve it on a loopback or otherwise protected address. now is
// the clock (nil: time.Now).
func AdminHandler(s Store, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	a := &admin{s: s, now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/webhooks/endpoints", a.listEndpoints)
	mux.HandleFunc("POST /v1/webhooks/endpoints", a.addEndpoint)
	mux.HandleFunc("GET /v1/webhooks/endpoints/{id}", a.getEndpoint)
	mux.HandleFunc("POST /v1/webhooks/endpoints/{id}/disable", a.setEnabled(false))
	mux.HandleFunc("POST /v1/webhooks/endpoints/{id}/enable", a.setEnabled(true))
	mux.HandleFunc("POST /v1/webhooks/endpoints/{id}/rotate-secret", a.rotate)
	mux.HandleFunc("GET /v1/webhooks/deliveries", a.deliveries)
	mux.HandleFunc("GET /v1/webhooks/attempts", a.attempts)
	mux.HandleFunc("POST /v1/webhooks/replay", a.replay)
	return mux
}

type admin struct {
	s   Store
	now func() time.Time
}

// EndpointView is an endpoint as the API and the CLI show it: without its
// secrets, with how many there are.
type EndpointView struct {
	Endpoint
	Secrets int `json:"secrets"`
}

func viewOf(e Endpoint) EndpointView { return EndpointView{Endpoint: e, Secrets: len(e.Secrets)} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fail answers err as a problem: 404 for an unknown endpoint, 400 for bad
// input, 500 for the store.
func fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if errors.Is(err, ErrEndpointNotFound) {
		status = http.StatusNotFound
	}
	title := http.StatusText(status)
	writeProblem(w, r, status, title, err.Error())
}

func decode(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (a *admin) listEndpoints(w http.ResponseWriter, r *http.Request) {
	es, err := a.s.Endpoints(r.Context())
	if err != nil {
		fail(w, r, http.StatusInternalServerError, err)
		return
	}
	out := make([]EndpointView, 0, len(es))
	for _, e := range es {
		out = append(out, viewOf(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// addRequest is EndpointSpec with JSON names.
type addRequest struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Secret      string   `json:"secret"`
	EventTypes  []string `json:"event_types"`
	Ordered     bool     `json:"ordered"`
	RateLimit   float64  `json:"rate_limit"`
	MaxInFlight int      `json:"max_in_flight"`
	Description string   `json:"description"`
	Disabled    bool     `json:"disabled"`
}

func (a *admin) addEndpoint(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if err := decode(r, &req); err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	e, err := NewEndpoint(EndpointSpec(req), a.now())
	if err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	if err := a.s.AddEndpoint(r.Context(), e); err != nil {
		fail(w, r, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"endpoint": viewOf(e), "secret": e.Secrets[0].Key})
}

func (a *admin) getEndpoint(w http.ResponseWriter, r *http.Request) {
	e, err := a.s.Endpoint(r.Context(), r.PathValue("id"))
	if err != nil {
		fail(w, r, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(e))
}

func (a *admin) setEnabled(enabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Reason string `json:"reason"`
		}
		if err := decode(r, &req); err != nil {
			fail(w, r, http.StatusBadRequest, err)
			return
		}
		if req.Reason == "" {
			req.Reason = "disabled by an operator"
		}
		if err := a.s.SetEnabled(r.Context(), r.PathValue("id"), enabled, req.Reason); err != nil {
			fail(w, r, http.StatusInternalServerError, err)
			return
		}
		a.getEndpoint(w, r)
	}
}

func (a *admin) rotate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Secret  string `json:"secret"`
		Overlap string `json:"overlap"`
	}
	if err := decode(r, &req); err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	var overlap time.Duration
	if req.Overlap != "" {
		d, err := time.ParseDuration(req.Overlap)
		if err != nil {
			fail(w, r, http.StatusBadRequest, err)
			return
		}
		overlap = d
	}
	secret, err := RotateSecret(r.Context(), a.s, r.PathValue("id"), req.Secret, overlap, a.now())
	if err != nil {
		status := http.StatusInternalServerError
		if req.Secret != "" {
			status = http.StatusBadRequest
		}
		fail(w, r, status, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": secret})
}

func queryInt(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q is not a count", name, v)
	}
	return n, nil
}

// ParseSince reads a time given as RFC 3339 or as a duration before now
// ("2h": two hours ago).
func ParseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want RFC 3339 (2026-12-02T10:00:00Z) or a duration (2h)", v)
	}
	return t, nil
}

func (a *admin) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	ds, err := a.s.Deliveries(r.Context(), DeliveryFilter{EndpointID: q.Get("endpoint"), MessageID: q.Get("message"), Status: q.Get("status"), Limit: limit})
	if err != nil {
		fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if ds == nil {
		ds = []DeliveryInfo{}
	}
	writeJSON(w, http.StatusOK, ds)
}

func (a *admin) attempts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	since, err := ParseSince(q.Get("since"), a.now())
	if err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	as, err := a.s.Attempts(r.Context(), AttemptFilter{EndpointID: q.Get("endpoint"), MessageID: q.Get("message"),
		Outcome: Outcome(q.Get("outcome")), Since: since, Limit: limit})
	if err != nil {
		fail(w, r, http.StatusInternalServerError, err)
		return
	}
	if as == nil {
		as = []Attempt{}
	}
	writeJSON(w, http.StatusOK, as)
}

func (a *admin) replay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MessageID  string `json:"message_id"`
		EndpointID string `json:"endpoint_id"`
		DeadOnly   bool   `json:"dead_only"`
		Since      string `json:"since"`
	}
	if err := decode(r, &req); err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	since, err := ParseSince(req.Since, a.now())
	if err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	rp := Replay{MessageID: req.MessageID, EndpointID: req.EndpointID, DeadOnly: req.DeadOnly, Since: since}
	if err := rp.Validate(); err != nil {
		fail(w, r, http.StatusBadRequest, err)
		return
	}
	n, err := a.s.Replay(r.Context(), rp, a.now())
	if err != nil {
		fail(w, r, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"replayed": n})
}
