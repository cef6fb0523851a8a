package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// KindHealth is an AWS Health scheduled change for EC2 instances (EventBridge detail-type
// "AWS Health Event", source aws.health): read it with ParseHealth and hand it to
// Options.Health.
const KindHealth Kind = "health"

// Values of AWS Health events.
const (
	detailHealth   = "AWS Health Event"
	sourceHealth   = "aws.health"
	serviceEC2     = "EC2"
	categoryChange = "scheduledChange"
	// statusCode: upcoming (before the window), open (in it), closed (over or canceled).
	healthClosed = "closed"
)

// healthCodes maps the eventTypeCode of AWS Health's EC2 scheduled changes to the code the same
// event has in instance metadata and DescribeInstanceStatus (lifecycle.Event*).
var healthCodes = map[string]string{
	"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED":            lifecycle.EventInstanceRetirement,
	"AWS_EC2_PERSISTENT_INSTANCE_RETIREMENT_SCHEDULED": lifecycle.EventInstanceRetirement,
	"AWS_EC2_INSTANCE_STOP_SCHEDULED":                  lifecycle.EventInstanceStop,
	"AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED":    lifecycle.EventInstanceReboot,
	"AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED":      lifecycle.EventSystemReboot,
	"AWS_EC2_INSTANCE_NETWORK_MAINTENANCE_SCHEDULED":   lifecycle.EventSystemMaintenance,
	"AWS_EC2_INSTANCE_POWER_MAINTENANCE_SCHEDULED":     lifecycle.EventSystemMaintenance,
	"AWS_EC2_SYSTEM_MAINTENANCE_SCHEDULED":             lifecycle.EventSystemMaintenance,
}

// HealthCode returns the AWS Health eventTypeCode of an EC2 scheduled event's code (the one
// the front sends); "" for a code AWS Health has no scheduled change for.
func HealthCode(code string) string {
	for _, k := range []string{"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED", "AWS_EC2_INSTANCE_STOP_SCHEDULED",
		"AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED", "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED",
		"AWS_EC2_INSTANCE_NETWORK_MAINTENANCE_SCHEDULED"} {
		if healthCodes[k] == code {
			return k
		}
	}
	return ""
}

// maxEntities bounds the instances one event may name (EventBridge pages larger ones).
const maxEntities = 1000

// HealthEvent is an AWS Health scheduled change of EC2 instances: Event is what instance
// metadata shows of it (ID is the event's ARN; State active, or completed once AWS Health
// closed it), Instances the affected instances.
type HealthEvent struct {
	TypeCode  string
	Event     lifecycle.ScheduledEvent
	Instances []string
}

type healthDetail struct {
	EventArn          string `json:"eventArn"`
	Service           string `json:"service"`
	EventTypeCode     string `json:"eventTypeCode"`
	EventTypeCategory string `json:"eventTypeCategory"`
	StartTime         string `json:"startTime"`
	EndTime           string `json:"endTime"`
	StatusCode        string `json:"statusCode"`
	AffectedEntities  []struct {
		EntityValue string `json:"entityValue"`
	} `json:"affectedEntities"`
	EventDescription []struct {
		LatestDescription string `json:"latestDescription"`
	} `json:"eventDescription"`
}

// ParseHealth reads an AWS Health event for EC2 scheduled changes from a queue message body
// (EventBridge's event, or it wrapped once by SNS). It returns an error for anything else.
func ParseHealth(body []byte) (HealthEvent, error) {
	n, kind, err := parse(body, true)
	if err != nil {
		return HealthEvent{}, err
	}
	if kind != KindHealth || n != (lifecycle.Notice{}) {
		return HealthEvent{}, fmt.Errorf("not an AWS Health scheduled change of EC2 instances (kind %s)", kind)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return HealthEvent{}, fmt.Errorf("decode message body: %w", err)
	}
	if env.Type == snsNotification && env.Message != nil {
		if err := json.Unmarshal([]byte(*env.Message), &env); err != nil {
			return HealthEvent{}, fmt.Errorf("SNS Message: %w", err)
		}
	}
	ev, _, err := parseHealth(env)
	return ev, err
}

// parseHealth reads an AWS Health event's detail; relevant=false for a well-formed event that
// is not an EC2 scheduled change of instances (another service, an issue, an account
// notification).
func parseHealth(env envelope) (HealthEvent, bool, error) {
	if env.Source != sourceHealth {
		return HealthEvent{}, false, fmt.Errorf("event %q from source %s, want %s", detailHealth, quote(env.Source), sourceHealth)
	}
	if len(env.Detail) == 0 {
		return HealthEvent{}, false, fmt.Errorf("event %q has no detail", detailHealth)
	}
	var d healthDetail
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return HealthEvent{}, false, fmt.Errorf("decode event detail: %w", err)
	}
	code, known := healthCodes[d.EventTypeCode]
	if d.Service != serviceEC2 || d.EventTypeCategory != categoryChange || !known {
		return HealthEvent{}, false, nil
	}
	switch {
	case d.EventArn == "" || len(d.EventArn) > 1600:
		return HealthEvent{}, false, fmt.Errorf("event detail: eventArn of %d characters (want 1 to 1600)", len(d.EventArn))
	case len(d.AffectedEntities) == 0:
		return HealthEvent{}, false, errors.New("event detail: no affectedEntities")
	case len(d.AffectedEntities) > maxEntities:
		return HealthEvent{}, false, fmt.Errorf("event detail: %d affectedEntities exceed %d", len(d.AffectedEntities), maxEntities)
	}
	start, err := healthTime(d.StartTime)
	if err != nil || start.IsZero() {
		return HealthEvent{}, false, fmt.Errorf("event detail: startTime %s: want a time such as \"Wed, 31 Jan 2024 03:00:00 GMT\"", quote(d.StartTime))
	}
	end, err := healthTime(d.EndTime)
	if err != nil {
		return HealthEvent{}, false, fmt.Errorf("event detail: endTime %s: want a time such as \"Wed, 31 Jan 2024 05:00:00 GMT\"", quote(d.EndTime))
	}
	ev := HealthEvent{TypeCode: d.EventTypeCode, Event: lifecycle.ScheduledEvent{ID: d.EventArn, Code: code, State: lifecycle.EventActive,
		NotBefore: start, NotAfter: end}}
	if d.StatusCode == healthClosed {
		ev.Event.State = lifecycle.EventCompleted
	}
	if len(d.EventDescription) > 0 {
		ev.Event.Description = cutString(d.EventDescription[0].LatestDescription, 256)
	}
	for _, e := range d.AffectedEntities {
		if !instanceIDRe.MatchString(e.EntityValue) {
			return HealthEvent{}, false, fmt.Errorf("event detail: affected entity %s is not an instance id (i-[0-9a-f]{8,17})", quote(e.EntityValue))
		}
		if !slices.Contains(ev.Instances, e.EntityValue) {
			ev.Instances = append(ev.Instances, e.EntityValue)
		}
	}
	return ev, true, nil
}

// healthTime reads AWS Health's times: RFC 1123 with GMT as EventBridge delivers them, or
// RFC 3339; "" is the zero time.
func healthTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(http.TimeFormat, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC1123, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	return t.UTC(), err
}

func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
