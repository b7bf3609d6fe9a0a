package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/pgstore"
	"github.com/idem-dev/idem/webhook/sqlitestore"
	"github.com/idem-dev/idem/webhook/webhookprom"
)

// newWebhooksCmd groups the webhook dispatcher's commands: serve, the
// endpoint verbs, the attempt log, replay, and listen (a local receiver).
func newWebhooksCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Deliver events from a topic as signed webhooks (Standard Webhooks), and receive them",
		Long: `The webhook dispatcher: consumes a Kafka topic (on idem or any Kafka cluster) and delivers
each event to every endpoint subscribed to its type, signed, retried, dead-lettered and replayable,
optionally in order per key. Its state lives in SQLite (--store sqlite:PATH) or PostgreSQL
(--store postgres://…, for several dispatcher processes). docs/webhooks.md is the guide.`,
	}
	var store string
	cmd.PersistentFlags().StringVar(&store, "store", "", "dispatcher state: sqlite:PATH or postgres://user@host/db (required)")
	cmd.AddCommand(webhooksServeCmd(&store), webhooksEndpointCmd(&store), webhooksAttemptsCmd(&store),
		webhooksDeliveriesCmd(&store), webhooksReplayCmd(&store), webhooksListenCmd())
	return cmd
}

// webhookStore is an open store and the constructor of a dispatcher over
// it (which is generic over the store's transaction type).
type webhookStore struct {
	webhook.Store
	newDispatcher func(webhook.Config) (*webhook.Dispatcher, error)
	close         func()
}

// openWebhookStore opens --store.
func openWebhookStore(ctx context.Context, spec string) (*webhookStore, error) {
	switch {
	case spec == "":
		return nil, errors.New("--store is required: sqlite:PATH or postgres://…")
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return nil, errors.New("--store sqlite:PATH needs a path")
		}
		s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
		if err != nil {
			return nil, err
		}
		return &webhookStore{Store: s, close: func() { s.Close() },
			newDispatcher: func(c webhook.Config) (*webhook.Dispatcher, error) { return webhook.New(s, c) }}, nil
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		pool, err := pgxpool.New(ctx, spec)
		if err != nil {
			return nil, err
		}
		s, err := pgstore.New(ctx, pool, pgstore.Config{})
		if err != nil {
			pool.Close()
			return nil, err
		}
		return &webhookStore{Store: s, close: pool.Close,
			newDispatcher: func(c webhook.Config) (*webhook.Dispatcher, error) { return webhook.New(s, c) }}, nil
	}
	return nil, fmt.Errorf("--store %q: want sqlite:PATH or postgres://…", spec)
}

// withStore runs fn with the opened --store.
func withStore(cmd *cobra.Command, store string, fn func(s *webhookStore) error) error {
	s, err := openWebhookStore(cmd.Context(), store)
	if err != nil {
		return err
	}
	defer s.close()
	return fn(s)
}

func webhooksServeCmd(store *string) *cobra.Command {
	var (
		brokers      []string
		topic, group string
		adminAddr    string
		schedule     string
		timeout      time.Duration
		lease        time.Duration
		disableAfter time.Duration
		maxInFlight  int
		name         string
		verbose      bool
		props        []string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a dispatcher: consume --topic and deliver to the endpoints",
		Long: `Runs a dispatcher until interrupted. Several processes with the same --group and a PostgreSQL
--store share the work; if one dies, its partitions and its leased deliveries move to the others.
The admin address serves the JSON API (/v1/webhooks/…), /metrics and /healthz.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return errors.New("--topic is required")
			}
			security, err := benchSecurity(props)
			if err != nil {
				return err
			}
			retries := webhook.DefaultRetries
			if schedule != "" {
				if retries, err = webhook.ParseRetries(schedule); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return withStore(cmd, *store, func(s *webhookStore) error {
				level := slog.LevelInfo
				if verbose {
					level = slog.LevelDebug
				}
				log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
				metrics, err := webhookprom.New(reg, s)
				if err != nil {
					return err
				}
				if err := checkKafkaLogin(ctx, brokers, security, log); err != nil {
					return err
				}
				dp, err := s.newDispatcher(webhook.Config{Brokers: brokers, ClientOpts: security, Topic: topic, Group: group, Retries: retries,
					RequestTimeout: timeout, Lease: lease, DisableAfter: disableAfter, MaxInFlight: maxInFlight, Name: name,
					OnAttempt: metrics.Observe, Logger: log})
				if err != nil {
					return err
				}
				if adminAddr != "" {
					ln, err := net.Listen("tcp", adminAddr)
					if err != nil {
						return fmt.Errorf("--admin-addr: %w", err)
					}
					mux := http.NewServeMux()
					mux.Handle("/v1/webhooks/", webhook.AdminHandler(s, nil))
					mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
					mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
					srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
					go srv.Serve(ln)
					defer srv.Close()
					log.Info("webhooks: admin API", "addr", "http://"+ln.Addr().String())
				}
				log.Info("webhooks: dispatching", "topic", topic, "group", group, "brokers", strings.Join(brokers, ","))
				return dp.Run(ctx)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated seed brokers of any Kafka-compatible cluster")
	f.StringArrayVarP(&props, "set", "X", nil, "client security property name=value for --brokers, as for the client commands (security.protocol, sasl.*, ssl.*); repeatable")
	f.StringVar(&topic, "topic", "", "topic of the events (record value = payload, its \"type\" = event type) (required)")
	f.StringVar(&group, "group", "idem-webhooks", "consumer group shared by the dispatchers of one deployment")
	f.StringVar(&adminAddr, "admin-addr", "127.0.0.1:9645", "address of the JSON admin API, /metrics and /healthz (\"\": none)")
	f.StringVar(&schedule, "retry-schedule", "", "pauses before each retry, e.g. 1s,2s,4s (default 5s,5m,30m,2h,5h,10h,10h; the first attempt is immediate)")
	f.DurationVar(&timeout, "request-timeout", 15*time.Second, "timeout of one attempt")
	f.DurationVar(&lease, "lease", 0, "how long a claimed delivery is this dispatcher's (default 2×timeout+30s)")
	f.DurationVar(&disableAfter, "disable-after", 5*24*time.Hour, "disable an endpoint that failed every attempt for this long (negative: never)")
	f.IntVar(&maxInFlight, "max-in-flight", 32, "default concurrent requests per endpoint")
	f.StringVar(&name, "name", "", "this dispatcher's name in the attempt log (default host/pid)")
	f.BoolVarP(&verbose, "verbose", "v", false, "debug logging")
	return cmd
}

func webhooksEndpointCmd(store *string) *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint", Short: "Add, list, enable, disable endpoints and rotate their secrets"}
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	var spec webhook.EndpointSpec
	add := &cobra.Command{
		Use:   "add",
		Short: "Add an endpoint; prints its secret (generated unless --secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				e, err := webhook.AddEndpoint(cmd.Context(), s, spec, time.Now())
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"endpoint": webhook.EndpointView{Endpoint: e, Secrets: 1}, "secret": e.Secrets[0].Key})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "endpoint %s → %s\nsecret   %s\n", e.ID, e.URL, e.Secrets[0].Key)
				return nil
			})
		},
	}
	add.Flags().StringVar(&spec.URL, "url", "", "the receiver's URL (required)")
	add.Flags().StringVar(&spec.Secret, "secret", "", "signing secret whsec_… (or whsk_… for ed25519); default: a new one")
	add.Flags().StringSliceVar(&spec.EventTypes, "events", nil, "event types it receives, comma-separated (default: all)")
	add.Flags().BoolVar(&spec.Ordered, "ordered", false, "deliver events with the same record key in order, one at a time")
	add.Flags().Float64Var(&spec.RateLimit, "rate-limit", 0, "requests per second per dispatcher (0: none)")
	add.Flags().IntVar(&spec.MaxInFlight, "max-in-flight", 0, "concurrent requests per dispatcher (0: the dispatcher's default)")
	add.Flags().StringVar(&spec.ID, "id", "", "endpoint id (default: a random ep_…)")
	add.Flags().StringVar(&spec.Description, "description", "", "free text")
	add.Flags().BoolVar(&spec.Disabled, "disabled", false, "add it disabled (its events accumulate until enabled)")

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List endpoints",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				es, err := s.Endpoints(cmd.Context())
				if err != nil {
					return err
				}
				if asJSON {
					views := []webhook.EndpointView{}
					for _, e := range es {
						views = append(views, webhook.EndpointView{Endpoint: e, Secrets: len(e.Secrets)})
					}
					return printJSON(cmd.OutOrStdout(), views)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tURL\tEVENTS\tORDERED\tENABLED\tLIMITS\tNOTE")
				for _, e := range es {
					events := strings.Join(e.EventTypes, ",")
					if events == "" {
						events = "*"
					}
					limits := "-"
					if e.RateLimit > 0 || e.MaxInFlight > 0 {
						limits = fmt.Sprintf("%g/s, %d in flight", e.RateLimit, e.MaxInFlight)
					}
					note := e.DisabledReason
					if !e.FailingSince.IsZero() {
						note = strings.TrimSpace(note + " failing since " + e.FailingSince.Format(time.RFC3339))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\n", e.ID, e.URL, events, e.Ordered, e.Enabled, limits, note)
				}
				return tw.Flush()
			})
		},
	}

	var reason string
	disable := &cobra.Command{
		Use:   "disable ID",
		Short: "Disable an endpoint: nothing is sent to it, its events accumulate for later",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				if err := s.SetEnabled(cmd.Context(), args[0], false, reason); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "endpoint %s disabled\n", args[0])
				return nil
			})
		},
	}
	disable.Flags().StringVar(&reason, "reason", "disabled by an operator", "why (shown in endpoint list)")
	enable := &cobra.Command{
		Use:   "enable ID",
		Short: "Enable an endpoint: what accumulated goes out as it falls due",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				if err := s.SetEnabled(cmd.Context(), args[0], true, ""); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "endpoint %s enabled\n", args[0])
				return nil
			})
		},
	}
	var newSecret string
	var overlap time.Duration
	rotate := &cobra.Command{
		Use:   "rotate-secret ID",
		Short: "Give an endpoint a new secret; the old one keeps signing too for --overlap",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				secret, err := webhook.RotateSecret(cmd.Context(), s, args[0], newSecret, overlap, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "endpoint %s\nsecret   %s\n(the previous secret also signs for %v)\n", args[0], secret, overlap)
				return nil
			})
		},
	}
	rotate.Flags().StringVar(&newSecret, "secret", "", "the new secret (default: a new random whsec_)")
	rotate.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the previous secret keeps signing")
	cmd.AddCommand(add, list, disable, enable, rotate)
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func webhooksAttemptsCmd(store *string) *cobra.Command {
	var f webhook.AttemptFilter
	var outcome, since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "attempts",
		Short: "The attempt log, newest first: time, status, latency, response excerpt",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.Since, err = webhook.ParseSince(since, time.Now()); err != nil {
				return err
			}
			f.Outcome = webhook.Outcome(outcome)
			return withStore(cmd, *store, func(s *webhookStore) error {
				as, err := s.Attempts(cmd.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), as)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tENDPOINT\tMESSAGE\t#\tOUTCOME\tSTATUS\tLATENCY\tERROR / RESPONSE")
				for _, a := range as {
					detail := a.Error
					if a.Response != "" {
						detail = strings.TrimSpace(detail + " " + oneLine(a.Response, 60))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%v\t%s\n", a.Started.Format(time.RFC3339Nano), a.EndpointID, a.MessageID,
						a.Attempt, a.Outcome, a.StatusCode, a.Latency.Round(time.Microsecond), detail)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&f.EndpointID, "endpoint", "", "only this endpoint")
	cmd.Flags().StringVar(&f.MessageID, "message", "", "only this message (webhook-id)")
	cmd.Flags().StringVar(&outcome, "outcome", "", "only succeeded, failed, dead or gone")
	cmd.Flags().StringVar(&since, "since", "", "only since a time (RFC 3339) or a duration ago (2h)")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func webhooksDeliveriesCmd(store *string) *cobra.Command {
	var f webhook.DeliveryFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "Deliveries and their state (pending, succeeded, dead), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, *store, func(s *webhookStore) error {
				ds, err := s.Deliveries(cmd.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), ds)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tENDPOINT\tMESSAGE\tTYPE\tSTATUS\tATTEMPTS\tNEXT\tLAST")
				for _, d := range ds {
					next := "-"
					if !d.NextAttempt.IsZero() {
						next = d.NextAttempt.Format(time.RFC3339)
					}
					last := d.LastError
					if last == "" && d.LastStatus != 0 {
						last = fmt.Sprint(d.LastStatus)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EndpointID, d.MessageID, d.EventType, d.Status, d.Attempts, next, oneLine(last, 60))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&f.EndpointID, "endpoint", "", "only this endpoint")
	cmd.Flags().StringVar(&f.MessageID, "message", "", "only this message (webhook-id)")
	cmd.Flags().StringVar(&f.Status, "status", "", "only pending, succeeded or dead")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func webhooksReplayCmd(store *string) *cobra.Command {
	var r webhook.Replay
	var since string
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Send deliveries again from their first attempt (same webhook-id)",
		Long: `Replays one message (--message, to every endpoint or to --endpoint), every dead-lettered
delivery of an endpoint (--endpoint ID --dead), or everything an endpoint got since a time
(--endpoint ID --since 2h or an RFC 3339 time). A running dispatcher sends them at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if r.Since, err = webhook.ParseSince(since, time.Now()); err != nil {
				return err
			}
			if err := r.Validate(); err != nil {
				return fmt.Errorf("%w (--message ID, or --endpoint ID with --dead or --since)", err)
			}
			return withStore(cmd, *store, func(s *webhookStore) error {
				n, err := s.Replay(cmd.Context(), r, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d deliveries to replay\n", n)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&r.MessageID, "message", "", "the message (webhook-id) to replay")
	cmd.Flags().StringVar(&r.EndpointID, "endpoint", "", "the endpoint whose deliveries to replay")
	cmd.Flags().BoolVar(&r.DeadOnly, "dead", false, "only dead-lettered deliveries")
	cmd.Flags().StringVar(&since, "since", "", "deliveries created since a time (RFC 3339) or a duration ago (2h)")
	return cmd
}

func webhooksListenCmd() *cobra.Command {
	var (
		addr      string
		secrets   []string
		status    int
		tolerance time.Duration
	)
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "A local receiver for development: verifies and prints each delivery",
		Long: `Listens on --addr and prints each webhook it receives, verified against --secret (as stripe
listen does). Valid ones are answered --status (default 200); invalid ones 400 or 401 with a
problem+json body saying why, as webhook.Verify does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(secrets) == 0 {
				return errors.New("--secret is required (the endpoint's whsec_… or whpk_…)")
			}
			if status < 100 || status > 599 {
				return fmt.Errorf("--status %d is not an HTTP status", status)
			}
			v, err := webhook.NewVerifier(secrets...)
			if err != nil {
				return err
			}
			v.Tolerance = tolerance
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "listening on http://%s\n", ln.Addr())
			srv := &http.Server{Handler: listenHandler(out, v, status), ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8765", "address to listen on")
	cmd.Flags().StringArrayVar(&secrets, "secret", nil, "secret to verify with (whsec_… or whpk_…); repeatable")
	cmd.Flags().IntVar(&status, "status", 200, "status to answer valid deliveries with (e.g. 500 to watch retries)")
	cmd.Flags().DurationVar(&tolerance, "tolerance", webhook.DefaultTolerance, "accepted clock difference of webhook-timestamp")
	return cmd
}

// listenHandler prints one line per request, then the payload.
func listenHandler(out io.Writer, v *webhook.Verifier, status int) http.Handler {
	verified := webhook.Verify(v, 0)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := webhook.MessageFrom(r.Context())
		fmt.Fprintf(out, "%s  %s  %-20s verified  → %d\n%s\n", time.Now().Format(time.RFC3339), m.ID, m.Type, status, m.Payload)
		w.WriteHeader(status)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		verified.ServeHTTP(rec, r)
		if rec.status >= 400 && rec.status != status {
			fmt.Fprintf(out, "%s  %s  refused → %d: %s\n", time.Now().Format(time.RFC3339), r.Header.Get(webhook.HeaderID), rec.status, strings.TrimSpace(rec.body.String()))
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	body   strings.Builder
}

func (r *statusRecorder) WriteHeader(s int) {
	r.status = s
	r.ResponseWriter.WriteHeader(s)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	if r.status >= 400 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// checkKafkaLogin asks the cluster for its metadata once before serving, so
// that a wrong password or a TLS mismatch is one clear error at start
// instead of a consumer retrying in silence. A cluster that does not answer
// at all may be starting: that is logged, and serve goes on and retries.
func checkKafkaLogin(ctx context.Context, brokers []string, security []kgo.Opt, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RetryTimeout(10 * time.Second), kgo.RequestRetries(2)}, security...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	var ke *kerr.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && (ke.Code == kerr.SaslAuthenticationFailed.Code || ke.Code == kerr.UnsupportedSaslMechanism.Code ||
		ke.Code == kerr.IllegalSaslState.Code || ke.Code == kerr.ClusterAuthorizationFailed.Code || ke.Code == kerr.TopicAuthorizationFailed.Code):
		return fmt.Errorf("webhooks serve: the cluster at %s refused this client: %w", strings.Join(brokers, ","), err)
	default:
		log.Warn("webhooks: cannot reach the cluster yet; serving anyway, the consumer retries", "brokers", strings.Join(brokers, ","), "err", err)
		return nil
	}
}
