package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarm-agent/swarm-agent/lifecycle"
)

// healthRetirement is an AWS Health event as EventBridge delivers it for an EC2 instance
// retirement (the shape of AWS Health's EventBridge schema reference: RFC 1123 times in GMT,
// one entity per affected instance).
const healthRetirement = `{"version":"0","id":"7bf73129-1428-4cd3-a780-95db273d1602","detail-type":"AWS Health Event","source":"aws.health","account":"123456789012","time":"2026-03-01T10:00:00Z","region":"eu-west-1","resources":["i-0123456789abcdef0","i-0fedcba9876543210"],"detail":{"eventArn":"arn:aws:health:eu-west-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_ab12cd34","service":"EC2","eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED","eventTypeCategory":"scheduledChange","eventScopeCode":"ACCOUNT_SPECIFIC","communicationId":"1234abc01232a4012345678-1","startTime":"Sun, 15 Mar 2026 10:00:00 GMT","endTime":"Sun, 15 Mar 2026 12:00:00 GMT","lastUpdatedTime":"Sun, 01 Mar 2026 10:00:00 GMT","statusCode":"upcoming","eventRegion":"eu-west-1","eventDescription":[{"language":"en_US","latestDescription":"EC2 has detected degradation of the underlying hardware hosting your Amazon EC2 instance."}],"affectedEntities":[{"entityValue":"i-0123456789abcdef0","lastUpdatedTime":"Sun, 01 Mar 2026 10:00:00 GMT","status":"IMPAIRED","tags":{}},{"entityValue":"i-0fedcba9876543210"}],"affectedAccount":"123456789012"}}`

const healthReboot = `{"version":"0","id":"2","detail-type":"AWS Health Event","source":"aws.health","detail":{"eventArn":"arn:aws:health:eu-west-1::event/EC2/AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED/x","service":"EC2","eventTypeCode":"AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED","eventTypeCategory":"scheduledChange","startTime":"2026-03-15T10:00:00Z","statusCode":"closed","affectedEntities":[{"entityValue":"i-0123456789abcdef0"}]}}`

const healthIssue = `{"version":"0","id":"3","detail-type":"AWS Health Event","source":"aws.health","detail":{"eventArn":"arn:aws:health:eu-west-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/x","service":"EC2","eventTypeCode":"AWS_EC2_OPERATIONAL_ISSUE","eventTypeCategory":"issue","startTime":"Sun, 15 Mar 2026 10:00:00 GMT"}}`

func TestParseHealth(t *testing.T) {
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	t.Run("retirement of two instances", func(t *testing.T) {
		for _, body := range []string{healthRetirement, sns(healthRetirement)} {
			if _, kind, err := Parse([]byte(body)); err != nil || kind != KindHealth {
				t.Fatalf("Parse = %s, %v; want KindHealth", kind, err)
			}
			ev, err := ParseHealth([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			want := lifecycle.ScheduledEvent{ID: "arn:aws:health:eu-west-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED_ab12cd34",
				Code: lifecycle.EventInstanceRetirement, State: lifecycle.EventActive, NotBefore: at("2026-03-15T10:00:00Z"), NotAfter: at("2026-03-15T12:00:00Z"),
				Description: "EC2 has detected degradation of the underlying hardware hosting your Amazon EC2 instance."}
			if ev.Event != want || strings.Join(ev.Instances, ",") != "i-0123456789abcdef0,i-0fedcba9876543210" || ev.TypeCode != "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED" {
				t.Fatalf("ParseHealth = %+v\nwant event %+v for both instances", ev, want)
			}
			if !ev.Event.Stops() || ev.Event.Reboots() {
				t.Errorf("a retirement must stop the instance")
			}
		}
	})
	t.Run("a closed reboot with RFC 3339 times", func(t *testing.T) {
		ev, err := ParseHealth([]byte(healthReboot))
		if err != nil || ev.Event.Code != lifecycle.EventSystemReboot || ev.Event.State != lifecycle.EventCompleted || !ev.Event.NotBefore.Equal(at("2026-03-15T10:00:00Z")) || !ev.Event.NotAfter.IsZero() {
			t.Fatalf("ParseHealth = %+v, %v", ev, err)
		}
	})
	t.Run("other health events need no action", func(t *testing.T) {
		for _, body := range []string{healthIssue,
			strings.Replace(healthRetirement, `"service":"EC2"`, `"service":"RDS"`, 1),
			strings.Replace(healthRetirement, `"eventTypeCode":"AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"`, `"eventTypeCode":"AWS_EC2_DEDICATED_HOST_RETIREMENT_SCHEDULED"`, 1)} {
			if _, kind, err := Parse([]byte(body)); err != nil || kind != KindIgnore {
				t.Errorf("Parse = %s, %v; want KindIgnore", kind, err)
			}
			if _, err := ParseHealth([]byte(body)); err == nil {
				t.Errorf("ParseHealth accepted an event that is not an EC2 scheduled change")
			}
		}
	})
	bad := map[string]struct{ body, want string }{
		"another source":     {strings.Replace(healthRetirement, `"source":"aws.health"`, `"source":"custom.health"`, 1), `source "custom.health"`},
		"no entities":        {strings.Replace(healthReboot, `"affectedEntities":[{"entityValue":"i-0123456789abcdef0"}]`, `"affectedEntities":[]`, 1), "no affectedEntities"},
		"not an instance":    {strings.Replace(healthReboot, `"entityValue":"i-0123456789abcdef0"`, `"entityValue":"vol-0123456789abcdef0"`, 1), `affected entity "vol-0123456789abcdef0" is not an instance id`},
		"bad start":          {strings.Replace(healthReboot, `"startTime":"2026-03-15T10:00:00Z"`, `"startTime":"next week"`, 1), `startTime "next week"`},
		"no start":           {strings.Replace(healthReboot, `"startTime":"2026-03-15T10:00:00Z",`, ``, 1), `startTime ""`},
		"no arn":             {strings.Replace(healthReboot, `"eventArn":"arn:aws:health:eu-west-1::event/EC2/AWS_EC2_SYSTEM_REBOOT_MAINTENANCE_SCHEDULED/x"`, `"eventArn":""`, 1), "eventArn of 0 characters"},
		"detail not object":  {`{"detail-type":"AWS Health Event","source":"aws.health","detail":[1]}`, "decode event detail"},
		"no detail":          {`{"detail-type":"AWS Health Event","source":"aws.health"}`, "has no detail"},
		"long hostile value": {strings.Replace(healthReboot, `"entityValue":"i-0123456789abcdef0"`, `"entityValue":"`+strings.Repeat("x", 5000)+`"`, 1), `"...`},
	}
	for name, tt := range bad {
		t.Run(name, func(t *testing.T) {
			_, kind, err := Parse([]byte(tt.body))
			if err == nil || kind != "" || !strings.Contains(err.Error(), tt.want) || len(err.Error()) > 400 {
				t.Fatalf("Parse = %s, %v; want an error containing %q, at most 400 bytes", kind, err, tt.want)
			}
			if _, err := ParseHealth([]byte(tt.body)); err == nil {
				t.Fatal("ParseHealth accepted it")
			}
		})
	}
	if HealthCode(lifecycle.EventSystemMaintenance) != "AWS_EC2_INSTANCE_NETWORK_MAINTENANCE_SCHEDULED" || HealthCode("nope") != "" {
		t.Errorf("HealthCode does not map the instance metadata codes")
	}
	for _, c := range []string{lifecycle.EventInstanceRetirement, lifecycle.EventInstanceStop, lifecycle.EventInstanceReboot, lifecycle.EventSystemReboot, lifecycle.EventSystemMaintenance} {
		if healthCodes[HealthCode(c)] != c {
			t.Errorf("HealthCode(%s) = %q does not map back", c, HealthCode(c))
		}
	}
}

func FuzzParseHealth(f *testing.F) {
	for _, s := range []string{healthRetirement, healthReboot, healthIssue, sns(healthRetirement), sns(sns(healthReboot)), `{"detail-type":"AWS Health Event","source":"aws.health","detail":{}}`, `{}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_, kind, perr := Parse(body)
		ev, err := ParseHealth(body)
		if (err == nil) != (perr == nil && kind == KindHealth) {
			t.Fatalf("ParseHealth error %v but Parse gave %s, %v", err, kind, perr)
		}
		if err != nil {
			if ev.Event != (lifecycle.ScheduledEvent{}) || ev.Instances != nil {
				t.Fatalf("ParseHealth returned %+v with error %v", ev, err)
			}
			return
		}
		if len(ev.Instances) == 0 || len(ev.Instances) > maxEntities || ev.Event.ID == "" || ev.Event.NotBefore.IsZero() {
			t.Fatalf("ParseHealth accepted an incomplete event %+v", ev)
		}
		for _, id := range ev.Instances {
			if !instanceIDRe.MatchString(id) {
				t.Fatalf("instance id %q", id)
			}
		}
		if !ev.Event.Stops() && !ev.Event.Reboots() {
			t.Fatalf("event code %q neither stops nor reboots the instance", ev.Event.Code)
		}
		if ev.Event.State != lifecycle.EventActive && ev.Event.State != lifecycle.EventCompleted {
			t.Fatalf("state %q", ev.Event.State)
		}
	})
}

// TestConsumerHealthEvent: an AWS Health event goes to Options.Health, not to the notice
// handler; while the handler says "later" the message stays in the queue, hidden for that long
// and never given up on however often it comes back (a retirement is announced weeks ahead);
// once handled it is deleted. Without Options.Health it is deleted unhandled.
func TestConsumerHealthEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newFakeSQS()
		id := q.send(healthRetirement)
		var mu sync.Mutex
		var seen []time.Time
		due := time.Now().Add(70 * time.Hour)
		var r recorder
		stop := start(t, q, Options{Health: func(ctx context.Context, ev HealthEvent) (time.Duration, error) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, time.Now())
			if len(ev.Instances) != 2 {
				return 0, fmt.Errorf("instances %v", ev.Instances)
			}
			return max(time.Until(due), 0), nil
		}}, r.handle)
		time.Sleep(71 * time.Hour)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if calls, _, _ := r.snapshot(); len(calls) != 0 {
			t.Errorf("the notice handler got the health event %d times", len(calls))
		}
		m := q.get(id)
		if !m.deleted {
			t.Fatalf("health event not deleted once handled (received %d times)", m.receives)
		}
		// Hidden 12 h at a time (SQS's most) until due: 70 h / 12 h, plus the last look: more
		// receives than DefaultMaxReceives, which would have given up on a failing notice.
		if len(seen) < 6 || len(seen) > 7 {
			t.Errorf("health handler called %d times over 70 h, want one per 12 h and the last", len(seen))
		}
	})
	t.Run("without a health handler", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := newFakeSQS()
			id := q.send(sns(healthRetirement))
			var r recorder
			stop := start(t, q, Options{}, r.handle)
			time.Sleep(time.Hour)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if calls, _, _ := r.snapshot(); len(calls) != 0 || !q.get(id).deleted {
				t.Errorf("handler calls %d, deleted %v; want the event deleted unhandled", len(calls), q.get(id).deleted)
			}
		})
	})
}
