package awsfront

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// SetHealthQueue names the SQS queue (in moto) that an EventBridge rule for AWS Health
// events (source aws.health) targets: from then on ScheduleEvent and EndEvent also deliver
// the AWS Health event of the scheduled change there, as AWS Health and EventBridge do ("" stops
// it).
func (f *Front) SetHealthQueue(queueURL string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthQueue = queueURL
}

// healthTypeCodes are the AWS Health event types of EC2's scheduled events, by the code
// instance metadata gives the event.
var healthTypeCodes = map[string]string{
	"instance-reboot":     "AWS_EC2_INSTANCE_REBOOT_MAINTENANCE_SCHEDULED",
	"system-reboot":       "AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED",
	"system-maintenance":  "AWS_EC2_INSTANCE_NETWORK_MAINTENANCE_SCHEDULED",
	"instance-retirement": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
	"instance-stop":       "AWS_EC2_INSTANCE_STOP_SCHEDULED",
}

// healthEvent is an AWS Health event as EventBridge delivers it (AWS Health's EventBridge
// schema: detail-type "AWS Health Event", times in the detail as RFC 1123 in GMT).
func (f *Front) healthEvent(instanceID string, ev imdsfake.Event, now time.Time) ([]byte, error) {
	code, ok := healthTypeCodes[ev.Code]
	if !ok {
		return nil, fmt.Errorf("no AWS Health event type for scheduled event code %q", ev.Code)
	}
	status := "upcoming"
	switch {
	case ev.State != imdsfake.EventActive:
		status = "closed"
	case !now.Before(ev.NotBefore):
		status = "open"
	}
	gmt := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(http.TimeFormat)
	}
	const account = "123456789012"
	detail := map[string]any{
		"eventArn":          fmt.Sprintf("arn:aws:health:%s::event/EC2/%s/%s_%s", f.cfg.Region, code, code, ev.ID),
		"service":           "EC2",
		"eventTypeCode":     code,
		"eventTypeCategory": "scheduledChange",
		"eventScopeCode":    "ACCOUNT_SPECIFIC",
		"communicationId":   fmt.Sprintf("%016x-1", rand.Uint64()),
		"startTime":         gmt(ev.NotBefore),
		"lastUpdatedTime":   gmt(now),
		"statusCode":        status,
		"eventRegion":       f.cfg.Region,
		"eventDescription":  []map[string]string{{"language": "en_US", "latestDescription": ev.Description}},
		"affectedEntities":  []map[string]any{{"entityValue": instanceID, "lastUpdatedTime": gmt(now), "tags": map[string]string{}}},
		"affectedAccount":   account,
	}
	if !ev.NotAfter.IsZero() {
		detail["endTime"] = gmt(ev.NotAfter)
	}
	return json.Marshal(map[string]any{
		"version": "0", "id": newToken(), "detail-type": "AWS Health Event", "source": "aws.health",
		"account": account, "time": now.UTC().Format(time.RFC3339), "region": f.cfg.Region,
		"resources": []string{instanceID}, "detail": detail,
	})
}

// sendHealthEvent delivers the AWS Health event of ev to the health queue, when one is set.
func (f *Front) sendHealthEvent(instanceID string, ev imdsfake.Event) error {
	f.mu.Lock()
	queue := f.healthQueue
	f.mu.Unlock()
	if queue == "" {
		return nil
	}
	msg, err := f.healthEvent(instanceID, ev, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.sendMessage(ctx, queue, msg)
}
