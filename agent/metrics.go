package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap/engine"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/scaleout"
)

// metrics are the agent's Prometheus series. Names are a public interface (README).
type metrics struct {
	reg             *prometheus.Registry
	drainsStarted   prometheus.Counter
	notifications   *prometheus.CounterVec // result=sent|failed|dropped
	drainsFinished  *prometheus.CounterVec // result=completed|abandoned|failed
	drainDuration   prometheus.Histogram
	heartbeats      prometheus.Counter
	hookCompletions *prometheus.CounterVec // result=CONTINUE|ABANDON|already
	// launchHooks counts this instance's launch lifecycle actions completed by boot, and the
	// leader's on instances' behalf.
	launchHooks *prometheus.CounterVec // result=CONTINUE|ABANDON|already
	reaped      prometheus.Counter
	// tokensRepublished counts leader passes that found the token store behind the swarm.
	tokensRepublished prometheus.Counter
	// unlockKeyRepublished counts leader passes that republished the unlock key (--autolock).
	unlockKeyRepublished prometheus.Counter
	// bootsSkipped counts runs that found their instance terminating and drained instead.
	bootsSkipped prometheus.Counter
	// ghostsRemoved counts old node objects of rejoined instances the leader removed.
	ghostsRemoved prometheus.Counter
	// refusals counts actions on an instance's behalf the leader refused, by reason.
	refusals *prometheus.CounterVec
	// takeovers counts drains the leader took over from nodes' agents, by reason.
	takeovers *prometheus.CounterVec
	// protections counts scale-in protection the leader set or lifted on managers.
	protections *prometheus.CounterVec
	// maintenance counts this node's drains ahead of EC2 reboot events, and its returns.
	maintenance *prometheus.CounterVec
	// impaired counts the leader's drains of nodes whose instances fail their status checks.
	impaired *prometheus.CounterVec
	// The leader's scale-out: rebalances started and finished (by result), the tasks they
	// moved, and the resizes of replicas-per-node services (by direction).
	rebalancesStarted  prometheus.Counter
	rebalancesFinished *prometheus.CounterVec
	rebalanceMoved     prometheus.Counter
	resizes            *prometheus.CounterVec
	awsErrors          *prometheus.CounterVec // service, code
	dockerErrors       *prometheus.CounterVec // op, kind
	inSwarm            prometheus.Gauge
	lastLoop           atomic.Int64 // unix nanos of the last main-loop tick, for /healthz
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.drainsStarted = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_drains_started_total", Help: "Drains started."})
	m.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_notifications_total", Help: "Drain notifications to --notify-url, by result (sent, failed after retries, dropped)."}, []string{"result"})
	m.drainsFinished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_drains_finished_total", Help: "Drains finished, by result."}, []string{"result"})
	m.drainDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "swarm_agent_drain_duration_seconds", Help: "Time from the termination signal to the lifecycle completion.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600}})
	m.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_lifecycle_heartbeats_total", Help: "RecordLifecycleActionHeartbeat calls that succeeded."})
	m.hookCompletions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_lifecycle_completions_total", Help: "CompleteLifecycleAction outcomes."}, []string{"result"})
	m.launchHooks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_launch_completions_total",
		Help: "Launch lifecycle actions completed: CONTINUE once the node was in the swarm, ABANDON when its boot gave up, already when it was no longer active."}, []string{"result"})
	m.reaped = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_reaped_nodes_total", Help: "Dead nodes removed from the swarm."})
	m.bootsSkipped = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_boots_skipped_total",
		Help: "Runs that found their instance terminating and resumed its drain instead of booting."})
	m.tokensRepublished = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_tokens_republished_total",
		Help: "Leader passes that republished the join tokens (rotated, or the store was behind)."})
	m.unlockKeyRepublished = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_unlock_key_republished_total",
		Help: "Leader passes that republished the swarm's unlock key with --autolock (rotated, or the store was behind)."})
	m.reg.MustRegister(m.unlockKeyRepublished)
	m.ghostsRemoved = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_ghost_nodes_removed_total",
		Help: "Old, down node objects of instances that joined again, removed by the leader."})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_lifecycle_refusals_total",
		Help: "Actions on an instance's behalf the leader refused, by reason (ambiguous, live_node, identity)."}, []string{"reason"})
	m.takeovers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_takeovers_total",
		Help: "Drains the leader took over on an instance's behalf, by reason (no_agent: its agent did not start within the queue grace; stale: its agent stopped reporting progress)."}, []string{"reason"})
	m.protections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_scale_in_protections_total",
		Help: "Scale-in protection the leader set on managers whose loss would cost quorum, or lifted, by result (set, cleared)."}, []string{"result"})
	m.maintenance = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_maintenance_drains_total",
		Help: "This node drained ahead of an EC2 scheduled reboot or maintenance event (drained), and made active again after it (restored)."}, []string{"action"})
	m.impaired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_impaired_drains_total",
		Help: "Nodes the leader drained because their instance's EC2 status checks fail (drained), made active again once they pass (restored), or left active because a third of the nodes are drained for it already (limit)."}, []string{"action"})
	m.rebalancesStarted = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_rebalances_started_total",
		Help: "Rolling updates the leader started to spread a swarm-agent.rebalance=true service onto joined nodes (one per service)."})
	m.rebalancesFinished = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_rebalances_finished_total",
		Help: "Rebalances that ended, by result (completed, paused, rolled_back, gone, unknown)."}, []string{"result"})
	m.rebalanceMoved = prometheus.NewCounter(prometheus.CounterOpts{Name: "swarm_agent_rebalance_tasks_moved_total",
		Help: "Tasks that run on another node after a rebalance than before it."})
	m.resizes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_service_resizes_total",
		Help: "Replica changes of swarm-agent.replicas-per-node services, by direction (up, down)."}, []string{"direction"})
	m.awsErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_aws_errors_total", Help: "AWS API errors by service and error code."}, []string{"service", "code"})
	m.dockerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "swarm_agent_docker_errors_total", Help: "Docker engine errors by operation and kind (unreachable, 4xx, 5xx)."}, []string{"op", "kind"})
	m.inSwarm = prometheus.NewGauge(prometheus.GaugeOpts{Name: "swarm_agent_in_swarm", Help: "1 while this node is an active swarm member."})
	m.reg.MustRegister(m.drainsStarted, m.notifications, m.drainsFinished, m.drainDuration, m.heartbeats, m.hookCompletions, m.launchHooks, m.reaped, m.tokensRepublished, m.bootsSkipped,
		m.ghostsRemoved, m.refusals, m.takeovers, m.protections, m.maintenance, m.impaired, m.rebalancesStarted, m.rebalancesFinished, m.rebalanceMoved, m.resizes, m.awsErrors, m.dockerErrors, m.inSwarm, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe counts one of the leader's decisions about other nodes (a lifecycle.Observer).
func (m *metrics) observe(event, reason string) {
	if m == nil {
		return
	}
	switch event {
	case lifecycle.EventGhostRemoved:
		m.ghostsRemoved.Inc()
	case lifecycle.EventRefused:
		m.refusals.WithLabelValues(reason).Inc()
	case lifecycle.EventTakeover:
		m.takeovers.WithLabelValues(reason).Inc()
	case lifecycle.EventProtection:
		m.protections.WithLabelValues(reason).Inc()
	case lifecycle.EventMaintenance:
		m.maintenance.WithLabelValues(reason).Inc()
	case lifecycle.EventImpaired:
		m.impaired.WithLabelValues(reason).Inc()
	}
}

// scaled counts what the leader's scale-out did (a scaleout.Scaler's Observe).
func (m *metrics) scaled(e scaleout.Event) {
	if m == nil {
		return
	}
	switch {
	case e.Kind == scaleout.KindRebalance && e.Started:
		m.rebalancesStarted.Inc()
	case e.Kind == scaleout.KindRebalance:
		m.rebalancesFinished.WithLabelValues(e.Result).Inc()
		m.rebalanceMoved.Add(float64(e.Moved))
	case e.Kind == scaleout.KindResize && e.To > e.From:
		m.resizes.WithLabelValues("up").Inc()
	case e.Kind == scaleout.KindResize:
		m.resizes.WithLabelValues("down").Inc()
	}
}

// tick records that the main loop is alive.
func (m *metrics) tick() { m.lastLoop.Store(time.Now().UnixNano()) }

// serve runs the metrics and health endpoint until ctx ends.
func (m *metrics) serve(ctx context.Context, addr string, log zerolog.Logger, status func() Status) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		last := time.Unix(0, m.lastLoop.Load())
		if time.Since(last) > 2*time.Minute {
			http.Error(w, "main loop stalled since "+last.Format(time.RFC3339), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = jsonEncode(w, status())
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info().Str("addr", l.Addr().String()).Msg("metrics and health endpoint listening")
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	case err := <-done:
		return err
	}
}

// dockerError counts one failed engine call (an engine.ErrorObserver).
func (m *metrics) dockerError(op, kind string) { m.dockerErrors.WithLabelValues(op, kind).Inc() }

// engineOptions are the engine options that feed these metrics; none for a nil m.
func (m *metrics) engineOptions() []engine.Option {
	if m == nil {
		return nil
	}
	return []engine.Option{engine.WithErrorObserver(m.dockerError)}
}

// countAWSErrors adds a middleware that counts every AWS API error by service and code; a nil
// m adds nothing.
func (m *metrics) countAWSErrors(cfg *aws.Config) {
	if m == nil {
		return
	}
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("swarmAgentErrorMetrics",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err != nil {
					code := "other"
					var ae smithy.APIError
					if errors.As(err, &ae) {
						code = ae.ErrorCode()
					}
					m.awsErrors.WithLabelValues(middleware.GetServiceID(ctx), code).Inc()
				}
				return out, md, err
			}), middleware.After)
	})
}

// notified counts one notification's outcome; m may be nil (the drain command has no metrics).
func (m *metrics) notified(result string) {
	if m != nil {
		m.notifications.WithLabelValues(result).Inc()
	}
}
