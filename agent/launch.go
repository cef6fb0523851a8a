package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/rs/zerolog"

	"github.com/swarm-agent/swarm-agent/bootstrap"
	"github.com/swarm-agent/swarm-agent/bootstrap/daemonconfig"
	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/lifecycle/asg"
	"github.com/swarm-agent/swarm-agent/lifecycle/imds"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// launch keeps this instance's launch lifecycle action (an EC2_INSTANCE_LAUNCHING hook of its
// Auto Scaling group) while boot works: heartbeats meanwhile, CONTINUE once the node is really
// in the swarm, ABANDON when the boot gave up for good.
type launch struct {
	hold *lifecycle.LaunchHold
	id   swarm.Identity
	log  zerolog.Logger
	m    *metrics // nil outside run
}

// Bounds of the launch lifecycle action's handling.
const (
	// inSwarmFloor is the least time a node that has just joined gets to show ready, however
	// little of --wait is left.
	inSwarmFloor = time.Minute
	// launchSettle bounds the completion of the action after the boot (ABANDON after a
	// failure: the agent exits right after).
	launchSettle = time.Minute
	// launchLookup bounds the wait for the lookup of the launch action after the join.
	launchLookup = 30 * time.Second
	// identityProbe bounds the instance metadata read after a configuration error: off EC2
	// nothing answers, and a refused flag must not wait long for it.
	identityProbe = 3 * time.Second
)

// inSwarmPoll is how often the node is looked at while it is not in the swarm yet (tests
// shorten it).
var inSwarmPoll = time.Second

// startLaunch starts looking for this instance's launch lifecycle action in the background,
// heartbeating it once found. It returns nil when there is nothing to look for: no
// --launch-hook-name (the group has no launch hook, or the leader completes it in queue mode:
// no Auto Scaling call, which 10,000 workers booting at once would spend against the
// account's limit), a dry run, a static identity, instance metadata that does not answer (boot
// reports it) or that says the instance is in no Auto Scaling group, or no AWS configuration.
func startLaunch(ctx context.Context, cfg Config, log zerolog.Logger, m *metrics) *launch {
	if cfg.LaunchHookName == "" || cfg.DryRun || cfg.Identity == "static" {
		return nil
	}
	id, err := identity(ctx, cfg)
	if err != nil {
		return nil
	}
	return startLaunchFor(ctx, cfg, id, log, m)
}

func startLaunchFor(ctx context.Context, cfg Config, id swarm.Identity, log zerolog.Logger, m *metrics) *launch {
	if cfg.LaunchHookName == "" {
		return nil
	}
	log = log.With().Str("component", "launch").Str("instance_id", id.InstanceID).Logger()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := newIMDS().TargetLifecycleState(tctx)
	cancel()
	if errors.Is(err, imds.ErrNotFound) {
		log.Debug().Msg("instance metadata has no Auto Scaling target lifecycle state: in no group, no launch lifecycle hook")
		return nil
	}
	w := &wiring{identity: id, m: m}
	ac, err := w.awsConfig(ctx, cfg)
	if err != nil {
		log.Warn().Err(err).Msg("no AWS configuration: a launch lifecycle hook, if any, is left to its timeout")
		return nil
	}
	c := asg.New(autoscaling.NewFromConfig(ac))
	c.LaunchHookName = cfg.LaunchHookName
	l := &lifecycle.Launch{Hook: c, InstanceID: id.InstanceID, HeartbeatOverride: cfg.HeartbeatEvery, Log: log}
	return &launch{hold: l.Start(ctx), id: id, log: log, m: m}
}

// bootLaunched is doBoot with this instance's launch lifecycle action kept: it completes it
// with CONTINUE once the node is really in the swarm (joined, labelled, ready and, for a
// manager, a reachable Raft member of a swarm with a leader), waiting for that at most what is
// left of --wait (and at least inSwarmFloor), and with ABANDON when the boot or that wait gave
// up for good; a boot interrupted by a signal leaves it to the next run or to the hook's
// timeout. A node that joined but never showed ready is left in the swarm: Auto Scaling
// terminates the instance, and the leader reaps the node once it is down.
//
// The launch lookup starts (its identity, target lifecycle state and AWS configuration reads)
// while the boot's own reads run: nothing of the boot waits for it until the node is in the
// swarm, or the boot failed.
func bootLaunched(ctx context.Context, cfg Config, log zerolog.Logger, st *statusFile, m *metrics) (bootstrap.Result, error) {
	start := time.Now()
	var l *launch
	started := make(chan struct{})
	go func() {
		defer close(started)
		l = startLaunch(ctx, cfg, log, m)
	}()
	launched := func() *launch {
		<-started
		return l
	}
	settled := false
	res, err := doBoot(ctx, cfg, log, st, m, func(ctx context.Context, w *wiring, res bootstrap.Result) error {
		if launched() == nil {
			return nil
		}
		settled = true
		return l.whenInSwarm(ctx, cfg, w, res, st, max(time.Until(start.Add(cfg.Wait)), inSwarmFloor))
	})
	if launched() != nil && err != nil && !settled {
		l.failed(ctx, err)
	}
	return res, err
}

// whenInSwarm waits until the node is really in the swarm and completes the action with
// CONTINUE; when wait passes first it completes it with ABANDON and returns ErrWaitElapsed.
func (l *launch) whenInSwarm(ctx context.Context, cfg Config, w *wiring, res bootstrap.Result, st *statusFile, wait time.Duration) error {
	// Most boots have no launch action to complete (a reboot, a group without a launch
	// hook): they do not wait for anything. One whose lookup has no answer yet waits for the
	// node and completes what a last lookup finds.
	if held, known := l.hold.Held(ctx, launchLookup); known && !held {
		l.hold.Release()
		return nil
	}
	role := swarm.Role(cfg.Role)
	var sw lifecycle.Swarm = engineSwarm{w.engine}
	if role == swarm.RoleWorker {
		// A worker reads its node through the managers' control API: an answer is also the
		// proof that a manager is reachable.
		remote, err := controlSwarm(ctx, cfg, w, l.log)
		if err != nil {
			return l.abandon(ctx, fmt.Errorf("reach the managers' control API: %w", err))
		}
		sw = fallbackSwarm{local: sw, remote: remote}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	why, err := waitInSwarm(wctx, sw, role, l.id.InstanceID, res.NodeID, w.engine, func(why string) {
		st.stage("waiting until the node is in the swarm to complete its launch lifecycle action: " + why)
	})
	if err != nil {
		if errors.Is(context.Cause(ctx), errInterrupted) || ctx.Err() != nil {
			l.release()
			return err
		}
		return l.abandon(ctx, fmt.Errorf("waited %s for the node to be in the swarm (%s): %w", wait.Round(time.Second), why, bootstrap.ErrWaitElapsed))
	}
	l.log.Info().Str("node_id", res.NodeID).Msg("the node is in the swarm: completing its launch lifecycle action with CONTINUE")
	st.stage("completing the launch lifecycle action")
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), launchSettle)
	defer ccancel()
	rep, err := l.hold.Complete(cctx, lifecycle.ResultContinue)
	l.count(rep)
	if err != nil {
		// The node is in the swarm; the next run completes the action (it still waits), or
		// the hook's timeout applies. Not a failed boot.
		l.log.Error().Err(err).Msg("launch lifecycle action not completed: the next run tries again, or the hook's default result applies at its timeout")
	}
	return nil
}

// waitInSwarm polls the node until lifecycle.InSwarm says it is in the swarm, labelling a
// worker with its instance id on the way (a manager's boot did). nodeID "" is read from the
// engine. It returns the last reason it was not, and ctx's error when ctx ends first.
func waitInSwarm(ctx context.Context, sw lifecycle.Swarm, role swarm.Role, instanceID, nodeID string, local lifecycle.Local, stage func(string)) (string, error) {
	var why string
	for {
		if nodeID == "" {
			if id, _, err := local.Self(ctx); err == nil {
				nodeID = id
			}
		}
		if nodeID == "" {
			why = "the engine names no node id"
		} else if n, err := sw.Node(ctx, nodeID); err != nil {
			why = "read the node: " + err.Error()
		} else {
			if role == swarm.RoleWorker && n.Labels[swarm.LabelInstanceID] != instanceID {
				if err := sw.SetNodeLabels(ctx, nodeID, map[string]string{swarm.LabelInstanceID: instanceID}); err == nil {
					continue
				}
			}
			leader := true
			if role == swarm.RoleManager {
				leader = false
				if nodes, err := sw.Nodes(ctx); err == nil {
					for _, x := range nodes {
						leader = leader || x.Leader && x.State == "ready"
					}
				}
			}
			ok, reason := lifecycle.InSwarm(n, role, instanceID, daemonconfig.NodeLabels(n.EngineLabels), leader)
			if ok {
				return "", nil
			}
			why = reason
		}
		stage(why)
		select {
		case <-ctx.Done():
			return why, ctx.Err()
		case <-time.After(inSwarmPoll):
		}
	}
}

// failed handles a boot that returned err before the node was in the swarm: ABANDON when the
// boot gave up for good (a bad configuration, access denied, --wait elapsed, ...), the action
// left alone when a signal interrupted it.
func (l *launch) failed(ctx context.Context, err error) {
	if errors.Is(err, errInterrupted) || errors.Is(context.Cause(ctx), errInterrupted) {
		l.release()
		return
	}
	_ = l.abandon(ctx, err)
}

// abandon completes the action with ABANDON because of err, and returns err.
func (l *launch) abandon(ctx context.Context, err error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), launchSettle)
	defer cancel()
	rep, cerr := l.hold.Complete(cctx, lifecycle.ResultAbandon)
	l.count(rep)
	switch {
	case cerr != nil:
		l.log.Error().Err(cerr).AnErr("reason", err).Msg("launch lifecycle action not abandoned: the hook's default result applies at its timeout")
	case rep.Result == lifecycle.ResultAbandon:
		l.log.Warn().AnErr("reason", err).Msg("boot gave up: launch lifecycle action completed with ABANDON (Auto Scaling replaces the instance)")
	}
	return err
}

// release stops the heartbeats and leaves the action waiting.
func (l *launch) release() {
	rep := l.hold.Release()
	if rep.Held {
		l.log.Info().Msg("boot interrupted: the launch lifecycle action is left to the next run or to the hook's timeout")
	}
}

func (l *launch) count(rep lifecycle.LaunchReport) {
	if l.m == nil {
		return
	}
	l.m.heartbeats.Add(float64(rep.Heartbeats))
	switch {
	case rep.AlreadyCompleted:
		l.m.launchHooks.WithLabelValues("already").Inc()
	case rep.Result != "":
		l.m.launchHooks.WithLabelValues(rep.Result).Inc()
	}
}

// abandonAfterConfigError completes this instance's launch lifecycle action with ABANDON
// after boot or run refused its configuration (a bad flag value, a bad discovery string): on
// a launching instance that is final, and Auto Scaling should replace the instance at once
// rather than when the hook times out. It does so only when --launch-hook-name names a hook
// (a bad name is one of the refused settings: the hook's timeout decides). It reads the
// identity from instance metadata unless the configuration says static, waiting at most
// identityProbe for it (off EC2 nothing answers).
func abandonAfterConfigError(ctx context.Context, cfg Config, log zerolog.Logger, cause error) {
	if !hookNameRE.MatchString(cfg.LaunchHookName) || cfg.DryRun || cfg.Identity == "static" || !errors.Is(cause, ErrUsage) {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, identityProbe)
	id, err := newIMDS().Identity(ictx)
	cancel()
	if err != nil {
		return
	}
	if !imds.ValidRegion(cfg.Region) {
		cfg.Region = ""
	}
	if cfg.HeartbeatEvery < 0 {
		cfg.HeartbeatEvery = 0
	}
	l := startLaunchFor(ctx, cfg, id, log, nil)
	if l == nil {
		return
	}
	_ = l.abandon(ctx, cause)
}
