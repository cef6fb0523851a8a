package awsfront

import (
	"fmt"
	"net/http"
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
