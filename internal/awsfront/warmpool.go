package awsfront

// The warm pool's state and API: its configuration (moto's), its instances (the front's),
// PutWarmPool, DescribeWarmPool, DeleteWarmPool and the pool in DescribeAutoScalingInstances.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Warm pool lifecycle states (moto keeps a warm pool's configuration but no instances: the
// front keeps them).
const (
	StateWarmedPending        = "Warmed:Pending"
	StateWarmedPendingWait    = "Warmed:Pending:Wait"
	StateWarmedPendingProceed = "Warmed:Pending:Proceed"
	StateWarmedStopped        = "Warmed:Stopped"
	StateWarmedRunning        = "Warmed:Running"
	StateWarmedHibernated     = "Warmed:Hibernated"
)

// warmInstance is an instance of a group's warm pool.
type warmInstance struct {
	id, group, az, itype string
	state                string // Warmed:Pending, ..., Warmed:Stopped; a waiting hold speaks over it
	target               string // the pool state it goes to: IMDS's target lifecycle state
}

// warmConfig is a group's warm pool configuration as moto keeps it.
type warmConfig struct {
	maxPrepared int32 // -1: the group's MaxSize
	minSize     int32
	poolState   string // Stopped | Running | Hibernated
	reuse       bool
}

// warmConfigOr is the group's warm pool configuration, or a stopped pool's when moto has
// none (any more).
func (f *Front) warmConfigOr(ctx context.Context, group string) warmConfig {
	cfg, ok, err := f.warmConfigOf(ctx, group)
	if err != nil || !ok {
		return warmConfig{maxPrepared: -1, poolState: "Stopped"}
	}
	return cfg
}

// target is the lifecycle state a warm instance ends in, and its target lifecycle state in IMDS.
func (c warmConfig) target() string { return "Warmed:" + c.poolState }

// warmConfigOf reads the group's warm pool configuration from moto; ok is false without one.
func (f *Front) warmConfigOf(ctx context.Context, group string) (warmConfig, bool, error) {
	out, err := f.asg.DescribeWarmPool(ctx, &autoscaling.DescribeWarmPoolInput{AutoScalingGroupName: aws.String(group)})
	if err != nil {
		return warmConfig{}, false, fmt.Errorf("describe warm pool of %s: %w", group, err)
	}
	w := out.WarmPoolConfiguration
	if w == nil {
		return warmConfig{}, false, nil
	}
	c := warmConfig{maxPrepared: -1, minSize: aws.ToInt32(w.MinSize), poolState: string(w.PoolState)}
	if w.MaxGroupPreparedCapacity != nil {
		c.maxPrepared = *w.MaxGroupPreparedCapacity
	}
	if c.poolState == "" {
		c.poolState = "Stopped"
	}
	c.reuse = w.InstanceReusePolicy != nil && aws.ToBool(w.InstanceReusePolicy.ReuseOnScaleIn)
	return c, true, nil
}

// putWarmPool is PutWarmPool with AWS's checks (moto checks nothing), then fills the pool.
func (f *Front) putWarmPool(c *call) {
	p := c.req.Params
	group := p["AutoScalingGroupName"]
	if group == "" {
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'autoScalingGroupName' failed to satisfy constraint: Member must not be null")
		return
	}
	minSize, maxPrep := int64(0), int64(-1)
	for _, k := range []struct {
		param, member string
		min           int64
		into          *int64
	}{{"MinSize", "minSize", 0, &minSize}, {"MaxGroupPreparedCapacity", "maxGroupPreparedCapacity", -1, &maxPrep}} {
		v := p[k.param]
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < k.min {
			c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", v, k.member, k.min))
			return
		}
		*k.into = n
	}
	if st := p["PoolState"]; st != "" && !slices.Contains([]string{"Stopped", "Running", "Hibernated"}, st) {
		c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value '%s' at 'poolState' failed to satisfy constraint: Member must satisfy enum value set: [Hibernated, Running, Stopped]", st))
		return
	}
	if maxPrep >= 0 && minSize > maxPrep {
		c.writeError(http.StatusBadRequest, "ValidationError", "The minimum size of the warm pool must be less than or equal to the maximum prepared capacity.")
		return
	}
	ctx := c.r.Context()
	resp, err := f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status == http.StatusOK {
		if err := f.fillPool(ctx, group); err != nil {
			f.log.Error().Err(err).Str("asg_name", group).Msg("fill the warm pool")
		}
	}
	copyResp(c.w, resp)
}

// deleteWarmPool is DeleteWarmPool: moto forgets the configuration, the front terminates the
// pool's instances.
func (f *Front) deleteWarmPool(c *call) {
	group := c.req.Params["AutoScalingGroupName"]
	ctx := c.r.Context()
	resp, err := f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status == http.StatusOK {
		f.mu.Lock()
		var ids []string
		for id, w := range f.pool {
			if w.group == group {
				ids = append(ids, id)
				delete(f.pool, id)
			}
		}
		f.mu.Unlock()
		if len(ids) > 0 {
			if _, err := f.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
				f.log.Error().Err(err).Str("asg_name", group).Msg("terminate the warm pool's instances")
			}
		}
	}
	copyResp(c.w, resp)
}

// poolStateLocked is a warm instance's lifecycle state: its waiting hold's, else its own.
// f.mu is held.
func (f *Front) poolStateLocked(w *warmInstance) string {
	if h := f.waitingLocked(w.id); h != nil && len(h.actions) > 0 {
		return h.actions[0].State
	}
	return w.state
}

// describeWarmPool is DescribeWarmPool: the configuration from moto, the instances from the
// front (moto lists none).
func (f *Front) describeWarmPool(c *call) {
	group := c.req.Params["AutoScalingGroupName"]
	ctx := c.r.Context()
	resp, err := f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status != http.StatusOK {
		copyResp(c.w, resp)
		return
	}
	cfg, ok, err := f.warmConfigOf(ctx, group)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	var b strings.Builder
	const op = "DescribeWarmPool"
	fmt.Fprintf(&b, `<%sResponse xmlns="%s"><%sResult>`, op, asgNS, op)
	if ok {
		b.WriteString(`<WarmPoolConfiguration>`)
		if cfg.maxPrepared >= 0 {
			fmt.Fprintf(&b, `<MaxGroupPreparedCapacity>%d</MaxGroupPreparedCapacity>`, cfg.maxPrepared)
		}
		fmt.Fprintf(&b, `<MinSize>%d</MinSize><PoolState>%s</PoolState><InstanceReusePolicy><ReuseOnScaleIn>%t</ReuseOnScaleIn></InstanceReusePolicy></WarmPoolConfiguration>`,
			cfg.minSize, xmlEsc(cfg.poolState), cfg.reuse)
	}
	b.WriteString(`<Instances>`)
	f.mu.Lock()
	ws := f.poolOfLocked(group)
	for _, w := range ws {
		fmt.Fprintf(&b, `<member><InstanceId>%s</InstanceId><InstanceType>%s</InstanceType><AvailabilityZone>%s</AvailabilityZone>`+
			`<LifecycleState>%s</LifecycleState><HealthStatus>Healthy</HealthStatus></member>`,
			xmlEsc(w.id), xmlEsc(w.itype), xmlEsc(w.az), xmlEsc(f.poolStateLocked(w)))
	}
	f.mu.Unlock()
	fmt.Fprintf(&b, `</Instances></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, op, c.f.nextID("req-"), op)
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write([]byte(b.String()))
}

// poolOfLocked is the group's warm instances by id ("" for every group). f.mu is held.
func (f *Front) poolOfLocked(group string) []*warmInstance {
	var ws []*warmInstance
	for _, w := range f.pool {
		if group == "" || w.group == group {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b *warmInstance) int { return strings.Compare(a.id, b.id) })
	return ws
}

// withPoolInstances adds the warm pool's instances to a DescribeAutoScalingInstances answer,
// as AWS lists them (moto does not know them): those the request names, or all of them.
func (f *Front) withPoolInstances(params map[string]string, body []byte) []byte {
	named := map[string]bool{}
	for k, v := range params {
		if strings.HasPrefix(k, "InstanceIds.member.") {
			named[v] = true
		}
	}
	var add strings.Builder
	f.mu.Lock()
	for _, w := range f.poolOfLocked("") {
		if len(named) > 0 && !named[w.id] {
			continue
		}
		fmt.Fprintf(&add, `<member><InstanceId>%s</InstanceId><InstanceType>%s</InstanceType><AutoScalingGroupName>%s</AutoScalingGroupName>`+
			`<AvailabilityZone>%s</AvailabilityZone><LifecycleState>%s</LifecycleState><HealthStatus>HEALTHY</HealthStatus>`+
			`<ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>`,
			xmlEsc(w.id), xmlEsc(w.itype), xmlEsc(w.group), xmlEsc(w.az), xmlEsc(f.poolStateLocked(w)))
	}
	f.mu.Unlock()
	if add.Len() == 0 {
		return body
	}
	s := string(body)
	if i := strings.Index(s, "</AutoScalingInstances>"); i >= 0 {
		return []byte(s[:i] + add.String() + s[i:])
	}
	if i := strings.Index(s, "<AutoScalingInstances/>"); i >= 0 {
		return []byte(s[:i] + "<AutoScalingInstances>" + add.String() + "</AutoScalingInstances>" + s[i+len("<AutoScalingInstances/>"):])
	}
	return body
}

// WarmPool lists the group's warm pool instances and their lifecycle states (the tests'
// view; DescribeWarmPool is the API's).
func (f *Front) WarmPool(group string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, w := range f.poolOfLocked(group) {
		out[w.id] = f.poolStateLocked(w)
	}
	return out
}

// warmTarget is the target lifecycle state IMDS gives a warm pool instance; ok is false for
// an instance in no pool.
func (f *Front) warmTarget(id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.pool[id]; w != nil {
		return w.target, true
	}
	return "", false
}

// TargetLifecycleState is what IMDS autoscaling/target-lifecycle-state answers the instance
// ("" for an instance IMDS does not know).
func (f *Front) TargetLifecycleState(instanceID string) string {
	in, _ := f.imds.Get(instanceID)
	return in.TargetLifecycleState
}
