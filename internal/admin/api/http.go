package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI is the OpenAPI 3 document of the API.
func OpenAPI() []byte { return openAPI }

// Route is one route the API serves, as http.ServeMux patterns spell it.
type Route struct {
	Method, Path string
	handle       func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error)
}

// Routes are the routes Handler serves (besides GET /v1/openapi.json);
// the OpenAPI document must list exactly these.
func Routes() []Route { return routes }

var routes = append([]Route{
	{"GET", "/v1/cluster", func(s *Service, ctx context.Context, c *Conn, _ *http.Request) (int, any, error) {
		v, err := s.Cluster(ctx, c)
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/topics", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		opts, err := ParseListOptions(r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.TopicsPage(ctx, c, opts)
		return http.StatusOK, v.Items, err
	}},
	{"POST", "/v1/topics", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var req CreateTopicRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		v, err := s.CreateTopic(ctx, c, req)
		return http.StatusCreated, v, err
	}},
	{"GET", "/v1/topics/{name}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		v, err := s.Topic(ctx, c, r.PathValue("name"))
		return http.StatusOK, v, err
	}},
	{"DELETE", "/v1/topics/{name}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.DeleteTopic(ctx, c, r.PathValue("name"))
	}},
	{"PATCH", "/v1/topics/{name}/configs", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var req AlterConfigsRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		v, err := s.AlterTopicConfigs(ctx, c, r.PathValue("name"), req)
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/topics/{name}/partitions/{partition}/messages", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		req, err := ParseMessagesRequest(r.PathValue("name"), r.PathValue("partition"), r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.Messages(ctx, c, req)
		return http.StatusOK, v, err
	}},
	{"POST", "/v1/topics/{name}/messages", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var req ProduceRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		v, err := s.Produce(ctx, c, r.PathValue("name"), req)
		return http.StatusCreated, v, err
	}},
	{"GET", "/v1/groups", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		opts, err := ParseListOptions(r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.GroupsPage(ctx, c, opts)
		return http.StatusOK, v.Items, err
	}},
	{"GET", "/v1/groups/{id}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		v, err := s.Group(ctx, c, r.PathValue("id"))
		return http.StatusOK, v, err
	}},
	{"DELETE", "/v1/groups/{id}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.DeleteGroup(ctx, c, r.PathValue("id"))
	}},
	{"POST", "/v1/groups/{id}/offsets", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var req ResetOffsetsRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		v, err := s.ResetOffsets(ctx, c, r.PathValue("id"), req)
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/transactions", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		opts, err := ParseListOptions(r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.TransactionsPage(ctx, c, opts)
		return http.StatusOK, v.Items, err
	}},
	{"POST", "/v1/transactions/{id}/abort", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		v, err := s.AbortTransaction(ctx, c, r.PathValue("id"))
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/share-groups", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		opts, err := ParseListOptions(r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.ShareGroupsPage(ctx, c, opts)
		return http.StatusOK, v.Items, err
	}},
	// Share-group detail, dead-letter topics and redrive (dlq.go, share.go).
	{"GET", "/v1/share-groups/{id}", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		v, err := s.ShareGroup(ctx, c, r.PathValue("id"))
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/dead-letters", func(s *Service, ctx context.Context, c *Conn, _ *http.Request) (int, any, error) {
		v, err := s.DeadLetterTopics(ctx, c)
		return http.StatusOK, v, err
	}},
	{"GET", "/v1/dead-letters/{topic}/records", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		opts, err := ParseDeadLettersRequest(r.URL.Query())
		if err != nil {
			return 0, nil, err
		}
		v, err := s.DeadLetters(ctx, c, r.PathValue("topic"), opts)
		return http.StatusOK, v, err
	}},
	{"POST", "/v1/dead-letters/{topic}/redrive", func(s *Service, ctx context.Context, c *Conn, r *http.Request) (int, any, error) {
		var req RedriveRequest
		if err := decodeOptional(r, &req); err != nil {
			return 0, nil, err
		}
		v, err := s.Redrive(ctx, c, r.PathValue("topic"), req)
		return http.StatusOK, v, err
	}},
}, labRoutes...) // lab.go

// requestTimeout bounds one API request's Kafka work.
const requestTimeout = 15 * time.Second

// maxBody bounds a request body.
const maxBody = 1 << 20

// Handler serves the API's routes and GET /v1/openapi.json; any other path
// under /v1/ answers 404 (and a known path with another method 405), as
// problem+json.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	for _, rt := range routes {
		mux.HandleFunc(rt.Method+" "+rt.Path, func(w http.ResponseWriter, r *http.Request) {
			user, pass, _ := r.BasicAuth()
			c, err := s.Conn(user, pass)
			if err != nil {
				writeProblem(w, err)
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
			defer cancel()
			status, v, err := rt.handle(s, ctx, c, r)
			if err != nil {
				writeProblem(w, err)
				return
			}
			if v == nil {
				w.WriteHeader(status)
				return
			}
			if raw, ok := v.(rawBody); ok { // the lab's chart
				w.Header().Set("Content-Type", raw.contentType)
				w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.WriteHeader(status)
				w.Write(raw.body)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(v)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			// No route: say so as problem+json rather than text. A known
			// path with another method gets the mux's 405 and Allow.
			rec := &statusOnly{header: http.Header{}}
			mux.ServeHTTP(rec, r)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.header.Get("Allow"))
				writeProblem(w, problem(http.StatusMethodNotAllowed, r.Method+" is not served on "+r.URL.Path))
				return
			}
			writeProblem(w, notFound("no such API path: %s", r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusOnly records the status and headers a handler writes.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }

// decode reads a JSON body strictly: unknown fields and trailing data are
// malformed input (400), as is a body over 1 MiB.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return problem(http.StatusUnsupportedMediaType, "send application/json, not "+ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("the request needs a JSON body")
		}
		return badRequest("malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON: data after the object")
	}
	return nil
}

// ParseMessagesRequest reads a page request from the path and query
// (offset=N or timestamp=ms, limit=K, isolation=read_committed):
// malformed numbers are a 400 problem.
func ParseMessagesRequest(topic, partition string, q map[string][]string) (MessagesRequest, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	req := MessagesRequest{Topic: topic}
	p, err := strconv.ParseInt(partition, 10, 32)
	if err != nil || p < 0 {
		return req, badRequest("partition must be a non-negative integer, not %q", partition)
	}
	req.Partition = int32(p)
	if v := get("offset"); v != "" {
		o, err := strconv.ParseInt(v, 10, 64)
		if err != nil || o < 0 {
			return req, badRequest("offset must be a non-negative integer, not %q", v)
		}
		req.Offset = &o
	}
	if v := get("timestamp"); v != "" {
		if req.Offset != nil {
			return req, badRequest("give offset or timestamp, not both")
		}
		ts, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ts < 0 {
			return req, badRequest("timestamp must be milliseconds since the epoch, not %q", v)
		}
		req.Timestamp = &ts
	}
	if v := get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l <= 0 {
			return req, badRequest("limit must be a positive integer, not %q", v)
		}
		req.Limit = min(l, MaxLimit)
	}
	switch v := get("isolation"); v {
	case "", "read_uncommitted":
	case "read_committed":
		req.ReadCommitted = true
	default:
		return req, badRequest("isolation must be read_uncommitted or read_committed, not %q", v)
	}
	return req, nil
}
