package awsfront

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// setDesiredCapacity is SetDesiredCapacity as AWS does it for a group with a terminating
// hook: a lower capacity picks the instances to scale in among those in service and not
// protected from scale-in, and each waits in Terminating:Wait on the hook (as
// TerminateInstanceInAutoScalingGroup does) instead of going at once as in moto. Protected
// instances are never picked: when too few are unprotected, the rest of the scale-in waits
// until protection is lifted, as on AWS (the front does not come back to it). The choice
// follows AWS's default termination policy, simplified: the Availability Zone with the most
// instances in service among those with an unprotected one, then the lowest instance id (AWS:
// the oldest launch template, then the next billing hour, then at random). A group without a
// terminating hook, and a capacity not lower than the instances in service, go to moto,
// which also leaves protected instances alone.
func (f *Front) setDesiredCapacity(c *call) {
	p := c.req.Params
	group := p["AutoScalingGroupName"]
	desired, err := strconv.Atoi(p["DesiredCapacity"])
	ctx := c.r.Context()
	forward := func() {
		resp, err := f.motoDo(ctx, c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
		if err != nil {
			c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
			return
		}
		copyResp(c.w, resp)
	}
	if group == "" || err != nil || desired < 0 {
		forward() // moto answers the validation errors
		return
	}
	hooks, err := f.asg.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
	if err != nil || !slices.ContainsFunc(hooks.LifecycleHooks, func(h asgtypes.LifecycleHook) bool {
		return aws.ToString(h.LifecycleTransition) == "autoscaling:EC2_INSTANCE_TERMINATING"
	}) {
		forward()
		return
	}
	out, err := f.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil || len(out.AutoScalingGroups) != 1 {
		forward() // moto says the group does not exist
		return
	}
	f.mu.Lock()
	held := map[string]bool{}
	for id, a := range f.actions {
		if a.State != StateTerminated {
			held[id] = true
		}
	}
	f.mu.Unlock()
	var inService []scaleInCandidate
	for _, in := range out.AutoScalingGroups[0].Instances {
		id := aws.ToString(in.InstanceId)
		if held[id] || in.LifecycleState != "InService" {
			continue
		}
		inService = append(inService, scaleInCandidate{id: id, az: aws.ToString(in.AvailabilityZone), protected: aws.ToBool(in.ProtectedFromScaleIn)})
	}
	if desired >= len(inService) {
		forward()
		return
	}
	for _, id := range pickScaleIn(inService, len(inService)-desired) {
		if _, err := f.startTermination(ctx, id, true); err != nil {
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
