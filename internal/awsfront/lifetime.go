package awsfront

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Maximum instance lifetime (MaxInstanceLifetime of CreateAutoScalingGroup and
// UpdateAutoScalingGroup), which moto neither checks, keeps nor acts on: the front checks it
// as AWS does, shows it in DescribeAutoScalingGroups and replaces the instances that reach it
// (lifetime_run.go).

// AWS's range of MaxInstanceLifetime: 0 (no maximum, clearing a value set before) or one day
// to one year, in seconds.
const (
	minInstanceLifetime = 86400
	maxInstanceLifetime = 31536000
)

// lifetimeRangeMsg is the ValidationError AWS gives for a value out of that range.
const lifetimeRangeMsg = "maxInstanceLifetime must be either equal to 0 or between 86400 and 31536000 seconds (inclusive). A value of 0 is used to remove a previously set value."

// lifetimeState is what the front keeps for maximum instance lifetimes. Under f.mu.
type lifetimeState struct {
	max      map[string]time.Duration         // by group: its MaxInstanceLifetime (none: no maximum)
	aged     map[string]time.Duration         // by instance: added to its age by AgeInstances
	launched map[string]time.Time             // by instance: EC2's LaunchTime, read once
	replaced map[string][]LifetimeReplacement // by group, in the order they started
	moving   map[string]map[string]bool       // by group: instances whose replacement is under way
}

// LifetimeReplacement is one instance replaced for having reached its group's maximum
// instance lifetime, as the tests see it.
type LifetimeReplacement struct {
	InstanceID string
	Age        time.Duration // its age when its termination started
	Start      time.Time     // when its termination started
}

// withMaxLifetime runs next, the forwarding of a CreateAutoScalingGroup or
// UpdateAutoScalingGroup, once its MaxInstanceLifetime is within AWS's range, and keeps the
// value once the call succeeded: a group created without one has none, an update without one
// leaves it, 0 clears it.
func (f *Front) withMaxLifetime(c *call, next func()) {
	v, set := c.req.Params["MaxInstanceLifetime"]
	var secs int64
	if set {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n != 0 && (n < minInstanceLifetime || n > maxInstanceLifetime) {
			c.writeError(http.StatusBadRequest, "ValidationError", lifetimeRangeMsg)
			return
		}
		secs = n
	}
	next()
	group := c.req.Params["AutoScalingGroupName"]
	if c.w.statusCode() != http.StatusOK || group == "" || !set && c.req.Operation != "CreateAutoScalingGroup" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if secs == 0 {
		delete(f.life.max, group)
		return
	}
	if f.life.max == nil {
		f.life.max = map[string]time.Duration{}
	}
	f.life.max[group] = time.Duration(secs) * time.Second
	f.log.Info().Str("asg_name", group).Int64("max_instance_lifetime", secs).Msg("maximum instance lifetime set")
}

// withMaxLifetimes adds MaxInstanceLifetime to each group of a DescribeAutoScalingGroups
// answer that has one (moto writes none).
func (f *Front) withMaxLifetimes(body []byte) []byte {
	f.mu.Lock()
	groups := make(map[string]time.Duration, len(f.life.max))
	for g, d := range f.life.max {
		groups[g] = d
	}
	f.mu.Unlock()
	for g, d := range groups {
		i := indexAfterMember(body, []byte("<AutoScalingGroupName>"+xmlEsc(g)+"</AutoScalingGroupName>"))
		if i < 0 {
			continue
		}
		body = slices.Concat(body[:i], fmt.Appendf(nil, "<MaxInstanceLifetime>%d</MaxInstanceLifetime>", int64(d/time.Second)), body[i:])
	}
	return body
}

// describeExtras adds to a DescribeAutoScalingInstances or DescribeAutoScalingGroups answer
// what moto does not know: the warm pool's instances, the groups' maximum instance lifetimes.
func (f *Front) describeExtras(req *Request, body []byte) []byte {
	switch req.Operation {
	case "DescribeAutoScalingInstances":
		return f.withPoolInstances(req.Params, body)
	case "DescribeAutoScalingGroups":
		return f.withMaxLifetimes(body)
	}
	return body
}

// AgeInstances makes every instance now in the group d older, as if d had passed for them
// (instances launched later are not aged): the tests' clock for maximum instance lifetime,
// which is at least a day. It returns the instances aged.
func (f *Front) AgeInstances(ctx context.Context, group string, d time.Duration) ([]string, error) {
	present, err := f.groupInstances(ctx, group)
	if err != nil {
		return nil, err
	}
	if len(present) == 0 {
		return nil, fmt.Errorf("age instances of %s: no instance in the group", group)
	}
	ids := make([]string, 0, len(present))
	f.mu.Lock()
	if f.life.aged == nil {
		f.life.aged = map[string]time.Duration{}
	}
	for id := range present {
		f.life.aged[id] += d
		ids = append(ids, id)
	}
	f.mu.Unlock()
	slices.Sort(ids)
	f.log.Info().Str("asg_name", group).Dur("by", d).Strs("instances", ids).Msg("instances aged")
	return ids, nil
}

// LifetimeReplacements returns the group's instances replaced for having reached its maximum
// instance lifetime, in the order their replacements started.
func (f *Front) LifetimeReplacements(group string) []LifetimeReplacement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.life.replaced[group])
}

// instanceAges returns the age of each instance named: since EC2's LaunchTime (read once per
// instance), plus what AgeInstances added.
func (f *Front) instanceAges(ctx context.Context, ids []string, now time.Time) (map[string]time.Duration, error) {
	f.mu.Lock()
	var unknown []string
	for _, id := range ids {
		if _, ok := f.life.launched[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	f.mu.Unlock()
	launched := map[string]time.Time{}
	if len(unknown) > 0 {
		out, err := f.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: unknown})
		if err != nil {
			return nil, fmt.Errorf("describe instances %v: %w", unknown, err)
		}
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				if in.LaunchTime != nil {
					launched[aws.ToString(in.InstanceId)] = *in.LaunchTime
				}
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.life.launched == nil {
		f.life.launched = map[string]time.Time{}
	}
	for id, t := range launched {
		f.life.launched[id] = t
	}
	ages := map[string]time.Duration{}
	for _, id := range ids {
		if t, ok := f.life.launched[id]; ok {
			ages[id] = now.Sub(t) + f.life.aged[id]
		}
	}
	return ages, nil
}
