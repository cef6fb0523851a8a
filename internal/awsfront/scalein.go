package awsfront

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// setDesiredCapacity is SetDesiredCapacity as AWS does it. A lower capacity of a group with a
// terminating hook picks the instances to scale in among those in service and not protected
// from scale-in, and each waits in Terminating:Wait on the hook (as
// TerminateInstanceInAutoScalingGroup does) instead of going at once as in moto. Protected
// instances are never picked: when too few are unprotected, the rest of the scale-in waits
// until protection is lifted, as on AWS (the front does not come back to it). The choice
// follows AWS's default termination policy, simplified: the Availability Zone with the most
// instances in service among those with an unprotected one, then the lowest instance id (AWS:
// the oldest launch template, then the next billing hour, then at random). Everything else
// goes to moto: a higher capacity launches instances, which a launching hook holds in
// Pending:Wait (withLaunches); a group without a terminating hook scales in at once, and moto
// also leaves protected instances alone.
func (f *Front) setDesiredCapacity(c *call) {
	p := c.req.Params
	group := p["AutoScalingGroupName"]
	desired, err := strconv.Atoi(p["DesiredCapacity"])
	ctx := c.r.Context()
	forward := func() { f.addPendingDecrements(c, group); f.forwardWithLaunches(c, group) }
	if group == "" || err != nil || desired < 0 {
		forward() // moto answers the validation errors
		return
	}
	hooks, err := f.groupHooks(ctx, group, TransitionTerminating)
	if err != nil || len(hooks) == 0 {
		forward()
		return
	}
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		forward() // moto says the group does not exist
		return
	}
	f.mu.Lock()
	other := f.overlayStatesLocked() // instances held, or on their way in or out
	f.mu.Unlock()
	var inService []scaleInCandidate
	for _, in := range out.AutoScalingGroups[0].Instances {
		id := aws.ToString(in.InstanceId)
		if _, moving := other[id]; moving || in.LifecycleState != "InService" {
			continue
		}
		inService = append(inService, scaleInCandidate{id: id, az: aws.ToString(in.AvailabilityZone), protected: aws.ToBool(in.ProtectedFromScaleIn)})
	}
	if desired >= len(inService) {
		forward()
		return
	}
	for _, id := range pickScaleIn(inService, len(inService)-desired) {
		if err := f.startScaleIn(ctx, id); err != nil {
			c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
			return
		}
	}
	writeASGEmpty(c, "SetDesiredCapacity")
}

// scaleInCandidate is an instance in service, as the scale-in choice sees it.
type scaleInCandidate struct {
	id, az    string
	protected bool
}

// pickScaleIn chooses up to n instances to scale in (setDesiredCapacity's policy); protected
// instances are never chosen.
func pickScaleIn(in []scaleInCandidate, n int) []string {
	left := slices.Clone(in)
	var out []string
	for range n {
		perAZ := map[string]int{}
		for _, c := range left {
			perAZ[c.az]++
		}
		best := -1
		for i, c := range left {
			if c.protected {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			b := left[best]
			if d := cmp.Compare(perAZ[c.az], perAZ[b.az]); d > 0 || d == 0 && c.id < b.id {
				best = i
			}
		}
		if best < 0 {
			break // the rest is protected: it waits, as on AWS
		}
		out = append(out, left[best].id)
		left = slices.Delete(left, best, best+1)
	}
	return out
}

// forwardWithLaunches forwards the request to moto and holds the instances it launched
// into group (UpdateAutoScalingGroup raising the capacity, ...).
func (f *Front) forwardWithLaunches(c *call, group string) {
	ctx := c.r.Context()
	var resp *motoResp
	err := f.withLaunches(ctx, group, func() error {
		var err error
		resp, err = f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
		return err
	})
	if resp == nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if err != nil {
		f.log.Error().Err(err).Str("asg_name", group).Msg("hold the instances launched")
	}
	copyResp(c.w, resp)
}

// createGroup is CreateAutoScalingGroup with its LifecycleHookSpecificationList, which moto
// ignores: the hooks are added as the group is created, so that they apply to its first
// instances (a launching hook holds them in Pending:Wait), as on AWS.
func (f *Front) createGroup(c *call) {
	p := c.req.Params
	group := p["AutoScalingGroupName"]
	var specs []*autoscaling.PutLifecycleHookInput
	for i := 1; ; i++ {
		pre := fmt.Sprintf("LifecycleHookSpecificationList.member.%d.", i)
		name, transition := p[pre+"LifecycleHookName"], p[pre+"LifecycleTransition"]
		if name == "" && transition == "" && p[pre+"HeartbeatTimeout"] == "" && p[pre+"DefaultResult"] == "" {
			break
		}
		for _, k := range []struct{ v, member string }{{name, "lifecycleHookName"}, {transition, "lifecycleTransition"}} {
			if k.v == "" {
				c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value null at 'lifecycleHookSpecificationList.%d.member.%s' failed to satisfy constraint: Member must not be null", i, k.member))
				return
			}
		}
		in := &autoscaling.PutLifecycleHookInput{AutoScalingGroupName: aws.String(group), LifecycleHookName: aws.String(name),
			LifecycleTransition: aws.String(transition)}
		if v := p[pre+"HeartbeatTimeout"]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("HeartbeatTimeout %q is not a number", v))
				return
			}
			in.HeartbeatTimeout = aws.Int32(int32(n))
		}
		if v := p[pre+"DefaultResult"]; v != "" {
			in.DefaultResult = aws.String(v)
		}
		if v := p[pre+"NotificationMetadata"]; v != "" {
			in.NotificationMetadata = aws.String(v)
		}
		specs = append(specs, in)
	}
	if len(specs) == 0 || group == "" {
		f.proxy.ServeHTTP(c.w, c.r)
		return
	}
	ctx := c.r.Context()
	var resp *motoResp
	err := f.withLaunches(ctx, group, func() error {
		var err error
		if resp, err = f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header); err != nil || resp.status != http.StatusOK {
			return err
		}
		for _, in := range specs {
			if _, err := f.asg.PutLifecycleHook(ctx, in); err != nil {
				return fmt.Errorf("add lifecycle hook %s to %s: %w", aws.ToString(in.LifecycleHookName), group, err)
			}
		}
		return nil
	})
	if resp == nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if err != nil {
		f.log.Error().Err(err).Str("asg_name", group).Msg("create group with lifecycle hooks")
	}
	copyResp(c.w, resp)
}
