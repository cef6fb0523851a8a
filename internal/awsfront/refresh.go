package awsfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// Instance refresh statuses, as AWS spells them.
const (
	RefreshPending    = "Pending"
	RefreshInProgress = "InProgress"
	RefreshSuccessful = "Successful"
	RefreshCancelling = "Cancelling"
	RefreshCancelled  = "Cancelled"
	RefreshFailed     = "Failed"
)

// refreshTick is how often a running refresh looks at its group.
const refreshTick = 250 * time.Millisecond

// Refresh is an instance refresh as the tests see it.
type Refresh struct {
	ID, Group          string
	Status, Reason     string
	Start, End         time.Time
	Percent            int // PercentageComplete
	ToUpdate           int // InstancesToUpdate
	MinHealthy         int // MinHealthyPercentage (AWS default 90)
	MaxHealthy         int // MaxHealthyPercentage (AWS default 100)
	Warmup             time.Duration
	Checkpoints        []int
	CheckpointDelay    time.Duration
	Desired            int      // the group's desired capacity, which the refresh keeps
	Old                []string // the instances it replaces, in the order it terminates them
	Launched           []string // the instances it launched (or Auto Scaling launched in their place)
	TerminationsIssued int
	// MinHealthySeen and MaxLiveSeen are the fewest healthy instances and the most instances
	// in service or pending (not terminating) the refresh saw while it ran.
	MinHealthySeen, MaxLiveSeen int
}

// instanceRefresh is one refresh of a group, run by its own goroutine (run).
type instanceRefresh struct {
	Refresh
	old         map[string]bool
	terminating map[string]bool      // old instances whose termination started
	healthyAt   map[string]time.Time // new instances: when first seen in service
	nextCheck   int                  // index into Checkpoints
	pauseUntil  time.Time
	cancel      bool
}

func (r *instanceRefresh) active() bool {
	return r.Status == RefreshPending || r.Status == RefreshInProgress || r.Status == RefreshCancelling
}

// Refreshes returns the group's instance refreshes, newest first.
func (f *Front) Refreshes(group string) []Refresh {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Refresh
	for _, r := range slices.Backward(f.refreshes[group]) {
		c := r.Refresh
		c.Old, c.Launched, c.Checkpoints = slices.Clone(r.Old), slices.Clone(r.Launched), slices.Clone(r.Checkpoints)
		out = append(out, c)
	}
	return out
}

// refreshBounds turns the healthy percentages into instance counts for desired capacity n:
// at least minKeep instances stay in service and healthy, at most maxLive are in service or
// pending. Without room above the desired capacity (max 100 %) at least one instance is
// replaced at a time (terminate and launch); with a max above 100 % at least one is
// launched ahead (launch before terminating).
func refreshBounds(n, minPct, maxPct int) (minKeep, maxLive int) {
	minKeep = n * minPct / 100
	maxLive = n * maxPct / 100
	if maxPct > 100 && maxLive <= n {
		maxLive = n + 1
	}
	if maxLive <= n && minKeep >= n {
		minKeep = n - 1
	}
	return max(minKeep, 0), maxLive
}

// startInstanceRefresh is StartInstanceRefresh. moto has no instance refresh: the front
// runs it, replacing the group's instances within the healthy percentages with the group's
// hooks honoured: a terminated instance waits in Terminating:Wait on its terminating hooks
// (the refresh goes on with the others meanwhile, as on AWS), a replacement counts as
// healthy once in service (its launching hooks completed) and warmed up.
func (f *Front) startInstanceRefresh(c *call) {
	p := c.req.Params
	group, ok := groupParam(c)
	if !ok {
		return
	}
	r, msg := parseRefresh(p)
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	ctx := c.r.Context()
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if len(out.AutoScalingGroups) != 1 {
		c.writeError(http.StatusBadRequest, "ValidationError", "AutoScalingGroup name not found - AutoScalingGroup "+group+" not found")
		return
	}
	g := out.AutoScalingGroups[0]
	if _, set := p["Preferences.InstanceWarmup"]; !set {
		// AWS: the group's default instance warmup, else its health check grace period.
		r.Warmup = time.Duration(aws.ToInt32(g.HealthCheckGracePeriod)) * time.Second
		if w := aws.ToInt32(g.DefaultInstanceWarmup); w > 0 {
			r.Warmup = time.Duration(w) * time.Second
		}
	}
	f.mu.Lock()
	holds := f.overlayStatesLocked()
	for _, o := range f.refreshes[group] {
		if o.active() {
			f.mu.Unlock()
			c.writeError(http.StatusBadRequest, "InstanceRefreshInProgress", "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.")
			return
		}
	}
	r.ID, r.Group, r.Status, r.Start = newToken(), group, RefreshPending, time.Now()
	r.Desired = int(aws.ToInt32(g.DesiredCapacity)) - f.pendingDecrementsLocked(group)
	for _, in := range g.Instances {
		id := aws.ToString(in.InstanceId)
		if st, held := holds[id]; held && strings.HasPrefix(st, "Terminating") {
			continue // on its way out already
		}
		if aws.ToBool(in.ProtectedFromScaleIn) {
			continue // AWS's default ScaleInProtectedInstances=Ignore: protected ones are not replaced
		}
		r.Old = append(r.Old, id)
	}
	slices.Sort(r.Old)
	r.old = map[string]bool{}
	for _, id := range r.Old {
		r.old[id] = true
	}
	r.ToUpdate, r.MinHealthySeen = len(r.Old), len(r.Old)
	if f.refreshes == nil {
		f.refreshes = map[string][]*instanceRefresh{}
	}
	f.refreshes[group] = append(f.refreshes[group], r)
	f.mu.Unlock()
	f.log.Info().Str("asg_name", group).Str("refresh_id", r.ID).Int("min_healthy", r.MinHealthy).Int("max_healthy", r.MaxHealthy).
		Int("instances", len(r.Old)).Msg("instance refresh started")
	f.wg.Add(1)
	go f.runRefresh(r)
	const op = "StartInstanceRefresh"
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult><InstanceRefreshId>%s</InstanceRefreshId></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, r.ID, op, c.f.nextID("req-"), op)
}

// groupParam is the request's AutoScalingGroupName, refused as AWS does when missing.
func groupParam(c *call) (string, bool) {
	group := c.req.Params["AutoScalingGroupName"]
	if group == "" {
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'autoScalingGroupName' failed to satisfy constraint: Member must not be null")
		return "", false
	}
	return group, true
}

// parseRefresh reads StartInstanceRefresh's strategy and preferences with AWS's defaults and
// ranges; it refuses preferences the front does not implement rather than ignore them.
func parseRefresh(p map[string]string) (*instanceRefresh, string) {
	r := &instanceRefresh{Refresh: Refresh{MinHealthy: 90, MaxHealthy: 100, CheckpointDelay: time.Hour}}
	if s := p["Strategy"]; s != "" && s != "Rolling" {
		return nil, fmt.Sprintf("Strategy %q: the front implements Rolling only", s)
	}
	intParam := func(key string, lo, hi int, dst *int) string {
		v, ok := p[key]
		if !ok {
			return ""
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Sprintf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have value between %d and %d", v, lowerFirst(strings.TrimPrefix(key, "Preferences.")), lo, hi)
		}
		*dst = n
		return ""
	}
	var warm, delay int
	for _, m := range []string{
		intParam("Preferences.MinHealthyPercentage", 0, 100, &r.MinHealthy),
		intParam("Preferences.MaxHealthyPercentage", 100, 200, &r.MaxHealthy),
		intParam("Preferences.InstanceWarmup", 0, 1<<31-1, &warm),
		intParam("Preferences.CheckpointDelay", 0, 172800, &delay),
	} {
		if m != "" {
			return nil, m
		}
	}
	r.Warmup = time.Duration(warm) * time.Second
	if _, ok := p["Preferences.CheckpointDelay"]; ok {
		r.CheckpointDelay = time.Duration(delay) * time.Second
	}
	if r.MaxHealthy-r.MinHealthy > 100 {
		return nil, "The difference between MaxHealthyPercentage and MinHealthyPercentage cannot be greater than 100."
	}
	if r.MinHealthy == 100 && r.MaxHealthy == 100 {
		return nil, "MinHealthyPercentage and MaxHealthyPercentage cannot both be 100: no instance could be replaced."
	}
	for i := 1; ; i++ {
		v, ok := p[fmt.Sprintf("Preferences.CheckpointPercentages.member.%d", i)]
		if !ok {
			break
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 || len(r.Checkpoints) > 0 && n <= r.Checkpoints[len(r.Checkpoints)-1] {
			return nil, fmt.Sprintf("CheckpointPercentages %q: values must be between 1 and 100, in increasing order", v)
		}
		r.Checkpoints = append(r.Checkpoints, n)
	}
	for k, v := range p {
		switch {
		case k == "Preferences.SkipMatching" && v == "false", k == "Preferences.AutoRollback" && v == "false",
			k == "Preferences.ScaleInProtectedInstances" && v == "Ignore":
		case strings.HasPrefix(k, "Preferences.") && !knownPreference(k),
			strings.HasPrefix(k, "DesiredConfiguration."):
			return nil, fmt.Sprintf("%s: not implemented by the front (it replaces every instance with the group's launch template)", k)
		}
	}
	return r, ""
}

func knownPreference(k string) bool {
	switch k {
	case "Preferences.MinHealthyPercentage", "Preferences.MaxHealthyPercentage", "Preferences.InstanceWarmup",
		"Preferences.CheckpointDelay":
		return true
	}
	return strings.HasPrefix(k, "Preferences.CheckpointPercentages.member.")
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// runRefresh drives r until it ends or the front closes.
func (f *Front) runRefresh(r *instanceRefresh) {
	defer f.wg.Done()
	t := time.NewTicker(refreshTick)
	defer t.Stop()
	log := f.log.With().Str("asg_name", r.Group).Str("refresh_id", r.ID).Logger()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		done, err := f.refreshStep(ctx, r)
		cancel()
		if err != nil {
			log.Warn().Err(err).Msg("instance refresh step")
		}
		if done {
			f.mu.Lock()
			st := r.Status
			f.mu.Unlock()
			log.Info().Str("status", st).Msg("instance refresh ended")
			return
		}
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// refreshStep looks at the group once and starts what the percentages allow: terminations
// of old instances while enough stay healthy, launches while the group stays within its
// maximum. It reports whether the refresh has ended.
func (f *Front) refreshStep(ctx context.Context, r *instanceRefresh) (bool, error) {
	present, err := f.groupInstances(ctx, r.Group)
	if err != nil {
		return false, err
	}
	now := time.Now()
	f.mu.Lock()
	holds := f.overlayStatesLocked()
	if r.Status == RefreshPending {
		r.Status = RefreshInProgress
	}
	// What the group holds now.
	healthy, live, newPresent, oldGone, warm, inFlight := 0, 0, 0, 0, 0, 0
	for _, id := range r.Old {
		switch {
		case !present[id]:
			oldGone++
		case r.terminating[id]:
			inFlight++
		default:
			healthy++
			live++
		}
	}
	for id := range present {
		if r.old[id] {
			continue
		}
		st, held := holds[id]
		if held && strings.HasPrefix(st, "Terminating") {
			inFlight++
			continue
		}
		newPresent++
		live++
		if !slices.Contains(r.Launched, id) {
			r.Launched = append(r.Launched, id) // launched by the refresh, or in place of one abandoned
		}
		if held {
			inFlight++
			continue // Pending:Wait: not yet in service
		}
		if r.healthyAt[id].IsZero() {
			if r.healthyAt == nil {
				r.healthyAt = map[string]time.Time{}
			}
			r.healthyAt[id] = now
		}
		if now.Sub(r.healthyAt[id]) >= r.Warmup {
			healthy++
			warm++
		}
	}
	r.MinHealthySeen, r.MaxLiveSeen = min(r.MinHealthySeen, healthy), max(r.MaxLiveSeen, live)
	done := min(oldGone, warm)
	if len(r.Old) > 0 {
		r.Percent = done * 100 / len(r.Old)
	} else {
		r.Percent = 100
	}
	r.ToUpdate = len(r.Old) - done
	switch {
	case r.cancel && inFlight == 0:
		r.Status, r.End, r.Reason = RefreshCancelled, now, "Instance refresh cancelled by user request."
	case r.cancel:
	case done == len(r.Old):
		r.Status, r.End, r.Reason = RefreshSuccessful, now, ""
	}
	if r.Status != RefreshInProgress {
		ended := !r.active()
		f.mu.Unlock()
		return ended, nil
	}
	if r.nextCheck < len(r.Checkpoints) && r.Percent >= r.Checkpoints[r.nextCheck] && r.pauseUntil.IsZero() {
		r.pauseUntil = now.Add(r.CheckpointDelay)
		r.Reason = fmt.Sprintf("Waiting for the checkpoint at %d%% (%s).", r.Checkpoints[r.nextCheck], r.CheckpointDelay)
	}
	if !r.pauseUntil.IsZero() {
		if now.Before(r.pauseUntil) {
			f.mu.Unlock()
			return false, nil
		}
		r.pauseUntil, r.Reason = time.Time{}, ""
		r.nextCheck++
	}
	// Terminations: old instances, in order, while enough stay healthy without them.
	minKeep, maxLive := refreshBounds(r.Desired, r.MinHealthy, r.MaxHealthy)
	var terminate []string
	for _, id := range r.Old {
		if !present[id] || r.terminating[id] || healthy-1 < minKeep {
			continue
		}
		if r.terminating == nil {
			r.terminating = map[string]bool{}
		}
		r.terminating[id] = true
		terminate = append(terminate, id)
		healthy--
		live--
	}
	// Launches: one replacement per old instance, while the group stays within maxLive.
	launches := 0
	for newPresent+launches < len(r.Old) && live+launches < maxLive {
		launches++
	}
	r.TerminationsIssued += len(terminate)
	f.mu.Unlock()
	var errs []error
	for _, id := range terminate {
		// The hold decrements the group when the instance goes: the refresh's launch put
		// one more in moto's desired capacity for it.
		if _, err := f.startTermination(ctx, id, true); err != nil {
			errs = append(errs, fmt.Errorf("refresh %s: terminate %s: %w", r.Group, id, err))
		}
	}
	for range launches {
		if err := f.launchOne(ctx, r.Group, func() {}); err != nil {
			errs = append(errs, fmt.Errorf("refresh %s: launch: %w", r.Group, err))
		}
	}
	return false, errors.Join(errs...)
}

// launchReplacement launches the replacement of an instance terminated without a lower
// desired capacity (TerminateInstanceInAutoScalingGroup without decrement) at once, as AWS
// does, not once the instance is gone as moto would: moto's capacity goes one up now and
// down again when the instance goes (the hold decrements), so the capacity shown stays.
func (f *Front) launchReplacement(ctx context.Context, h *hold) error {
	return f.launchOne(ctx, h.group, func() {
		f.mu.Lock()
		h.decrement = true
		f.mu.Unlock()
	})
}

// launchOne makes moto launch one instance into group (its desired capacity one up), held
// by the group's launching hooks like any launch; launched runs once moto took the new
// capacity, before anyone can describe the group.
func (f *Front) launchOne(ctx context.Context, group string, launched func()) error {
	return f.withLaunches(ctx, group, func() error {
		out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
		if err != nil || len(out.AutoScalingGroups) != 1 {
			return fmt.Errorf("describe group %s: %v", group, err)
		}
		g := out.AutoScalingGroups[0]
		want := aws.ToInt32(g.DesiredCapacity) + 1
		in := &autoscaling.UpdateAutoScalingGroupInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(want)}
		if want > aws.ToInt32(g.MaxSize) {
			in.MaxSize = aws.Int32(want) // AWS may exceed the maximum size during a refresh
		}
		if _, err = f.asg.UpdateAutoScalingGroup(ctx, in); err != nil {
			return err
		}
		launched()
		return nil
	})
}

// pendingDecrementsLocked counts the group's instances held on their way out whose group
// goes down by one when they go (a scale-in): on AWS its desired capacity is lower at once.
// f.mu is held.
func (f *Front) pendingDecrementsLocked(group string) int {
	n := 0
	for _, h := range f.holds {
		if h.group == group && h.transition == TransitionTerminating && h.decrement && !h.settled {
			n++
		}
	}
	return n
}

// desiredFix is how the front shows a group's desired capacity otherwise than moto.
type desiredFix struct {
	abs   bool // value replaces moto's; else it is added to it
	value int
}

// desiredOverlayLocked is the desired capacity AWS would show for each group that the front
// shows otherwise than moto: a refresh keeps the group's (moto's is one up per replacement
// launched ahead of its old instance's end), and a scale-in held by a hook is lower at once.
// f.mu is held.
func (f *Front) desiredOverlayLocked() map[string]desiredFix {
	out := map[string]desiredFix{}
	for _, h := range f.holds {
		if h.transition == TransitionTerminating && h.decrement && !h.settled {
			fix := out[h.group]
			fix.value--
			out[h.group] = fix
		}
	}
	for g, rs := range f.refreshes {
		for _, r := range rs {
			if r.active() {
				out[g] = desiredFix{abs: true, value: r.Desired}
			}
		}
	}
	return out
}

var desiredRe = regexp.MustCompile(`<DesiredCapacity>(\d+)</DesiredCapacity>`)

// overlayDesired rewrites DesiredCapacity of each group in a DescribeAutoScalingGroups body
// that overlay names (moto writes it after the group's name, before its instances).
func overlayDesired(body []byte, overlay map[string]desiredFix) []byte {
	out := body
	for g, fix := range overlay {
		i := indexAfterMember(out, []byte("<AutoScalingGroupName>"+xmlEsc(g)+"</AutoScalingGroupName>"))
		if i < 0 {
			continue
		}
		m := desiredRe.FindSubmatchIndex(out[i:])
		if m == nil {
			continue
		}
		v := fix.value
		if !fix.abs {
			cur, _ := strconv.Atoi(string(out[i+m[2] : i+m[3]]))
			v += cur
		}
		out = slices.Concat(out[:i+m[2]], []byte(strconv.Itoa(max(v, 0))), out[i+m[3]:])
	}
	return out
}

// indexAfterMember finds the group member that opens with tag and returns the index after it.
func indexAfterMember(body, tag []byte) int {
	open := slices.Concat([]byte("<member>"), tag)
	i := bytes.Index(body, open)
	if i < 0 {
		return -1
	}
	return i + len(open)
}

// describeInstanceRefreshes is DescribeInstanceRefreshes: the group's refreshes, newest
// first, optionally only those named.
func (f *Front) describeInstanceRefreshes(c *call) {
	p := c.req.Params
	group, ok := groupParam(c)
	if !ok {
		return
	}
	var ids []string
	for i := 1; ; i++ {
		v, ok := p[fmt.Sprintf("InstanceRefreshIds.member.%d", i)]
		if !ok {
			break
		}
		ids = append(ids, v)
	}
	var b strings.Builder
	for _, r := range f.Refreshes(group) {
		if len(ids) > 0 && !slices.Contains(ids, r.ID) {
			continue
		}
		fmt.Fprintf(&b, `<member><InstanceRefreshId>%s</InstanceRefreshId><AutoScalingGroupName>%s</AutoScalingGroupName><Status>%s</Status>`,
			r.ID, xmlEsc(r.Group), r.Status)
		if r.Reason != "" {
			fmt.Fprintf(&b, `<StatusReason>%s</StatusReason>`, xmlEsc(r.Reason))
		}
		fmt.Fprintf(&b, `<StartTime>%s</StartTime>`, r.Start.UTC().Format("2006-01-02T15:04:05.000Z"))
		if !r.End.IsZero() {
			fmt.Fprintf(&b, `<EndTime>%s</EndTime>`, r.End.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		fmt.Fprintf(&b, `<PercentageComplete>%d</PercentageComplete><InstancesToUpdate>%d</InstancesToUpdate>`, r.Percent, r.ToUpdate)
		fmt.Fprintf(&b, `<Preferences><MinHealthyPercentage>%d</MinHealthyPercentage><MaxHealthyPercentage>%d</MaxHealthyPercentage><InstanceWarmup>%d</InstanceWarmup>`,
			r.MinHealthy, r.MaxHealthy, int(r.Warmup/time.Second))
		if len(r.Checkpoints) > 0 {
			b.WriteString(`<CheckpointPercentages>`)
			for _, cp := range r.Checkpoints {
				fmt.Fprintf(&b, `<member>%d</member>`, cp)
			}
			fmt.Fprintf(&b, `</CheckpointPercentages><CheckpointDelay>%d</CheckpointDelay>`, int(r.CheckpointDelay/time.Second))
		}
		b.WriteString(`<SkipMatching>false</SkipMatching></Preferences><Strategy>Rolling</Strategy></member>`)
	}
	const op = "DescribeInstanceRefreshes"
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult><InstanceRefreshes>%s</InstanceRefreshes></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, b.String(), op, c.f.nextID("req-"), op)
}

// cancelInstanceRefresh is CancelInstanceRefresh: the group's active refresh stops starting
// replacements; those under way finish (a terminating instance's hook is still waited for),
// then it is Cancelled. Instances already replaced stay.
func (f *Front) cancelInstanceRefresh(c *call) {
	group, ok := groupParam(c)
	if !ok {
		return
	}
	f.mu.Lock()
	var r *instanceRefresh
	for _, o := range f.refreshes[group] {
		if o.Status == RefreshPending || o.Status == RefreshInProgress {
			r = o
		}
	}
	if r != nil {
		r.cancel, r.Status = true, RefreshCancelling
	}
	f.mu.Unlock()
	if r == nil {
		c.writeError(http.StatusBadRequest, "ActiveInstanceRefreshNotFound", "No in progress or pending Instance Refresh found for Auto Scaling group "+group)
		return
	}
	const op = "CancelInstanceRefresh"
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult><InstanceRefreshId>%s</InstanceRefreshId></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, r.ID, op, c.f.nextID("req-"), op)
}

// addPendingDecrements rewrites a SetDesiredCapacity for moto: the capacity asked for is
// AWS's, which a scale-in held by a hook lowered at once; moto's is lowered only when the
// instance goes, so moto is asked for that many more.
func (f *Front) addPendingDecrements(c *call, group string) {
	f.mu.Lock()
	n := f.pendingDecrementsLocked(group)
	f.mu.Unlock()
	q, err := url.ParseQuery(string(c.body))
	if n == 0 || err != nil {
		return
	}
	d, err := strconv.Atoi(q.Get("DesiredCapacity"))
	if err != nil {
		return
	}
	q.Set("DesiredCapacity", strconv.Itoa(d+n))
	c.body = []byte(q.Encode())
}
