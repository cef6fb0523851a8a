package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// Kind says what the consumer should do with a parsed message.
type Kind string

// Message kinds.
const (
	// KindTerminate is a termination notice: hand it to the handler.
	KindTerminate Kind = "terminate"
	// KindLaunch is a launch notice (a launch hook holds an instance in Pending:Wait or
	// Warmed:Pending:Wait): hand it to the handler.
	KindLaunch Kind = "launch"
	// KindTest is Auto Scaling's test notification, sent when a hook's target is configured.
	KindTest Kind = "test"
	// KindIgnore is a well-formed message that needs no action (another EventBridge event,
	// a plain Auto Scaling notification).
	KindIgnore Kind = "ignore"
)

// Values in Auto Scaling notifications and EventBridge events.
const (
	transitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	transitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	testNotification      = "autoscaling:TEST_NOTIFICATION"
	detailTerminate       = "EC2 Instance-terminate Lifecycle Action"
	detailLaunch          = "EC2 Instance-launch Lifecycle Action"
	detailSpotWarning     = "EC2 Spot Instance Interruption Warning"
	snsNotification       = "Notification"
	// Origin and Destination values.
	originEC2      = "EC2"
	originGroup    = "AutoScalingGroup"
	originWarmPool = "WarmPool"
)

// maxBody bounds what Parse accepts; SQS itself caps messages at 256 KiB.
const maxBody = 256 << 10

var instanceIDRe = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)

// hookMessage is the lifecycle hook notification, sent directly to SQS or as an
// EventBridge event's detail.
type hookMessage struct {
	Event                string `json:"Event"`
	LifecycleTransition  string `json:"LifecycleTransition"`
	AutoScalingGroupName string `json:"AutoScalingGroupName"`
	LifecycleHookName    string `json:"LifecycleHookName"`
	EC2InstanceID        string `json:"EC2InstanceId"`
	LifecycleActionToken string `json:"LifecycleActionToken"`
	// Origin and Destination: EC2, AutoScalingGroup or WarmPool (warm pool events carry
	// them; hook notifications to SQS say EC2 or AutoScalingGroup).
	Origin      string `json:"Origin"`
	Destination string `json:"Destination"`
}

// envelope holds the keys that tell the formats apart.
type envelope struct {
	// SNS
	Type    string  `json:"Type"`
	Message *string `json:"Message"`
	// EventBridge
	DetailType *string         `json:"detail-type"`
	Source     string          `json:"source"`
	Time       string          `json:"time"`
	Detail     json.RawMessage `json:"detail"`
}

// spotDetail is the detail of an EC2 Spot Instance Interruption Warning.
type spotDetail struct {
	InstanceID     string `json:"instance-id"`
	InstanceAction string `json:"instance-action"`
}

// Parse reads one queue message body. It accepts the Auto Scaling lifecycle hook notification
// as delivered to SQS, the EventBridge events "EC2 Instance-terminate Lifecycle Action" and
// "EC2 Instance-launch Lifecycle Action" (and "EC2 Spot Instance Interruption Warning"), and
// either wrapped once by SNS. A terminating transition gives KindTerminate with a Notice of
// Source "queue"; a launching one KindLaunch with a Notice of Kind "launch"; the test
// notification gives KindTest; other well-formed events give KindIgnore. Anything else is an
// error naming what is wrong. Parse never panics.
func Parse(body []byte) (lifecycle.Notice, Kind, error) {
	return parse(body, true)
}

func parse(body []byte, unwrapSNS bool) (lifecycle.Notice, Kind, error) {
	if len(body) > maxBody {
		return lifecycle.Notice{}, "", fmt.Errorf("message body of %d bytes exceeds %d", len(body), maxBody)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return lifecycle.Notice{}, "", errors.New("message body is not a JSON object")
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return lifecycle.Notice{}, "", fmt.Errorf("decode message body: %w", err)
	}
	switch {
	case env.Type == snsNotification && env.Message != nil:
		if !unwrapSNS {
			return lifecycle.Notice{}, "", errors.New("SNS notification nested inside another SNS notification")
		}
		n, k, err := parse([]byte(*env.Message), false)
		if err != nil {
			return lifecycle.Notice{}, "", fmt.Errorf("SNS Message: %w", err)
		}
		return n, k, nil
	case env.DetailType != nil:
		return parseEvent(env)
	}
	var m hookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return lifecycle.Notice{}, "", fmt.Errorf("decode hook notification: %w", err)
	}
	if m.Event != "" && m.LifecycleTransition == "" {
		// autoscaling:TEST_NOTIFICATION, or a plain Auto Scaling notification
		// (autoscaling:EC2_INSTANCE_TERMINATE, ...) that a lifecycle hook did not send.
		if m.Event == testNotification {
			return lifecycle.Notice{}, KindTest, nil
		}
		return lifecycle.Notice{}, KindIgnore, nil
	}
	return parseHook(m)
}

func parseEvent(env envelope) (lifecycle.Notice, Kind, error) {
	switch dt := *env.DetailType; dt {
	case detailTerminate, detailLaunch:
		transition := transitionTerminating
		if dt == detailLaunch {
			transition = transitionLaunching
		}
		if len(env.Detail) == 0 {
			return lifecycle.Notice{}, "", fmt.Errorf("event %q has no detail", dt)
		}
		var m hookMessage
		if err := json.Unmarshal(env.Detail, &m); err != nil {
			return lifecycle.Notice{}, "", fmt.Errorf("decode event detail: %w", err)
		}
		if m.LifecycleTransition == "" {
			// EventBridge's detail always names it; be lenient only about its absence.
			m.LifecycleTransition = transition
		}
		if m.LifecycleTransition != transition {
			return lifecycle.Notice{}, "", fmt.Errorf("event %q carries LifecycleTransition %s", dt, quote(m.LifecycleTransition))
		}
		n, k, err := parseHook(m)
		if err != nil {
			return lifecycle.Notice{}, "", fmt.Errorf("event detail: %w", err)
		}
		return n, k, nil
	case detailSpotWarning:
		var d spotDetail
		if len(env.Detail) == 0 {
			return lifecycle.Notice{}, "", fmt.Errorf("event %q has no detail", detailSpotWarning)
		}
		if err := json.Unmarshal(env.Detail, &d); err != nil {
			return lifecycle.Notice{}, "", fmt.Errorf("decode event detail: %w", err)
		}
		if !instanceIDRe.MatchString(d.InstanceID) {
			return lifecycle.Notice{}, "", fmt.Errorf("event detail: instance-id %s is not an instance id (i-[0-9a-f]{8,17})", quote(d.InstanceID))
		}
		n := lifecycle.Notice{Kind: "spot", InstanceID: d.InstanceID, Source: "queue"}
		if t, err := time.Parse(time.RFC3339, env.Time); err == nil {
			// The warning comes two minutes before the interruption.
			n.Deadline = t.Add(2 * time.Minute)
		}
		return n, KindTerminate, nil
	case detailHealth:
		_, relevant, err := parseHealth(env)
		switch {
		case err != nil:
			return lifecycle.Notice{}, "", err
		case !relevant:
			return lifecycle.Notice{}, KindIgnore, nil
		}
		return lifecycle.Notice{}, KindHealth, nil
	case "":
		return lifecycle.Notice{}, "", errors.New("event has an empty detail-type")
	default:
		return lifecycle.Notice{}, KindIgnore, nil
	}
}

func parseHook(m hookMessage) (lifecycle.Notice, Kind, error) {
	kind, noticeKind := KindTerminate, "scale-in"
	switch m.LifecycleTransition {
	case transitionTerminating:
	case transitionLaunching:
		kind, noticeKind = KindLaunch, "launch"
	case "":
		return lifecycle.Notice{}, "", errors.New("hook notification has no LifecycleTransition (and no Event, detail-type or SNS Message)")
	default:
		return lifecycle.Notice{}, "", fmt.Errorf("LifecycleTransition %s is not %s or %s", quote(m.LifecycleTransition), transitionTerminating, transitionLaunching)
	}
	for _, f := range []struct{ name, v string }{{"Origin", m.Origin}, {"Destination", m.Destination}} {
		switch f.v {
		case "", originEC2, originGroup, originWarmPool:
		default:
			return lifecycle.Notice{}, "", fmt.Errorf("%s %s is not %s, %s or %s", f.name, quote(f.v), originEC2, originGroup, originWarmPool)
		}
	}
	switch {
	case !instanceIDRe.MatchString(m.EC2InstanceID):
		return lifecycle.Notice{}, "", fmt.Errorf("EC2InstanceId %s is not an instance id (i-[0-9a-f]{8,17})", quote(m.EC2InstanceID))
	case m.AutoScalingGroupName == "":
		return lifecycle.Notice{}, "", errors.New("AutoScalingGroupName is empty")
	case len(m.AutoScalingGroupName) > 255:
		return lifecycle.Notice{}, "", fmt.Errorf("AutoScalingGroupName of %d characters exceeds 255", len(m.AutoScalingGroupName))
	case m.LifecycleHookName == "":
		return lifecycle.Notice{}, "", errors.New("LifecycleHookName is empty")
	case len(m.LifecycleHookName) > 255:
		return lifecycle.Notice{}, "", fmt.Errorf("LifecycleHookName of %d characters exceeds 255", len(m.LifecycleHookName))
	case len(m.LifecycleActionToken) > 36:
		// A UUID; the token is not quoted in the error on purpose.
		return lifecycle.Notice{}, "", fmt.Errorf("LifecycleActionToken of %d characters exceeds 36", len(m.LifecycleActionToken))
	}
	return lifecycle.Notice{
		Kind:        noticeKind,
		InstanceID:  m.EC2InstanceID,
		ASG:         m.AutoScalingGroupName,
		Hook:        m.LifecycleHookName,
		Token:       m.LifecycleActionToken,
		Source:      "queue",
		Destination: m.Destination,
	}, kind, nil
}

// quote quotes a value for an error message, cut short so a hostile body cannot flood the log.
func quote(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return fmt.Sprintf("%q...", s[:maxLen])
	}
	return fmt.Sprintf("%q", s)
}
