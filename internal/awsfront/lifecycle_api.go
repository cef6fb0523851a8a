package awsfront

// The lifecycle hook calls as AWS answers them: CompleteLifecycleAction,
// RecordLifecycleActionHeartbeat, TerminateInstanceInAutoScalingGroup, and finding the action a
// request names.

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// findAction returns the waiting action the request names, or a ValidationError message. The
// request names the instance (InstanceId) or the action (LifecycleActionToken), and the hook
// and its group, which must match. f.mu is held.
func (f *Front) findAction(p map[string]string) (*action, string) {
	id, token := p["InstanceId"], p["LifecycleActionToken"]
	notFound := "No active Lifecycle Action found with instance ID " + id
	if id == "" {
		notFound = "No active Lifecycle Action found with token " + token
	}
	var candidates []*action
	for k, h := range f.holds {
		if id != "" && k.instanceID != id {
			continue
		}
		for _, a := range h.actions {
			if token == "" || a.Token == token {
				candidates = append(candidates, a)
			}
		}
	}
	var named *action
	for _, a := range candidates {
		if (p["AutoScalingGroupName"] == "" || p["AutoScalingGroupName"] == a.ASG) &&
			(p["LifecycleHookName"] == "" || p["LifecycleHookName"] == a.Hook) {
			if named == nil || !a.h.settled && !a.done {
				named = a
			}
		}
	}
	if named == nil {
		if len(candidates) > 0 {
			return candidates[0], notFound
		}
		return nil, notFound
	}
	if named.h.settled || named.done {
		return named, notFound
	}
	return named, ""
}

// checkHookRequest refuses what AWS refuses before looking for an action: a missing hook or
// group name (both required), neither an instance id nor a token.
func checkHookRequest(c *call) bool {
	p := c.req.Params
	for _, k := range []struct{ param, member string }{{"LifecycleHookName", "lifecycleHookName"}, {"AutoScalingGroupName", "autoScalingGroupName"}} {
		if p[k.param] == "" {
			c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at '"+k.member+"' failed to satisfy constraint: Member must not be null")
			return false
		}
	}
	return true
}

func (f *Front) completeLifecycleAction(c *call) {
	p := c.req.Params
	if !checkHookRequest(c) {
		return
	}
	result := p["LifecycleActionResult"]
	if result != "CONTINUE" && result != "ABANDON" {
		c.writeError(http.StatusBadRequest, "ValidationError", fmt.Sprintf("LifecycleActionResult %q: must be CONTINUE or ABANDON", result))
		return
	}
	f.mu.Lock()
	a, msg := f.findAction(p)
	if a != nil {
		a.Completions++
	}
	if msg == "" {
		a.done, a.Result, a.Ended = true, result, time.Now()
	}
	f.mu.Unlock()
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	f.settle(a.h, false)
	writeASGEmpty(c, "CompleteLifecycleAction")
}

func (f *Front) recordHeartbeat(c *call) {
	if !checkHookRequest(c) {
		return
	}
	f.mu.Lock()
	a, msg := f.findAction(c.req.Params)
	if msg == "" {
		a.Heartbeats++
		a.Deadline = time.Now().Add(a.HeartbeatTimeout)
		if a.Deadline.After(a.GlobalDeadline) {
			a.Deadline = a.GlobalDeadline
		}
	}
	f.mu.Unlock()
	if msg != "" {
		c.writeError(http.StatusBadRequest, "ValidationError", msg)
		return
	}
	writeASGEmpty(c, "RecordLifecycleActionHeartbeat")
}

// terminateInGroup is TerminateInstanceInAutoScalingGroup as AWS does it: with a terminating
// hook the instance waits in Terminating:Wait (IMDS says Terminated, a notice goes out) until
// the action is completed or times out; moto alone would terminate it at once.
func (f *Front) terminateInGroup(c *call) {
	p := c.req.Params
	id, dec := p["InstanceId"], p["ShouldDecrementDesiredCapacity"]
	switch {
	case id == "":
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'instanceId' failed to satisfy constraint: Member must not be null")
		return
	case dec != "true" && dec != "false":
		c.writeError(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'shouldDecrementDesiredCapacity' failed to satisfy constraint: Member must not be null")
		return
	}
	group, err := f.startTermination(c.r.Context(), id, dec == "true")
	switch {
	case errors.Is(err, errNotInGroup):
		c.writeError(http.StatusBadRequest, "ValidationError", "Instance Id not found - No managed instance found for instance ID: "+id)
		return
	case errors.Is(err, errAlreadyTerminating):
		c.writeError(http.StatusBadRequest, "ValidationError", "Instance "+id+" is already terminating")
		return
	case err != nil:
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	const op = "TerminateInstanceInAutoScalingGroup"
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult><Activity><ActivityId>%s</ActivityId>`+
		`<AutoScalingGroupName>%s</AutoScalingGroupName><Description>Terminating EC2 instance: %s</Description>`+
		`<Cause>At %s instance %s was taken out of service in response to a user request.</Cause>`+
		`<StartTime>%s</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress><Details>{}</Details>`+
		`</Activity></%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, newToken(), xmlEsc(group), xmlEsc(id), time.Now().UTC().Format(time.RFC3339), xmlEsc(id),
		time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), op, c.f.nextID("req-"), op)
}

func writeASGEmpty(c *call, op string) {
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<%sResponse xmlns="%s"><%sResult/><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		op, asgNS, op, c.f.nextID("req-"), op)
}
