package imdsfake

// The metadata tree: what each path answers for an instance.

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// eventsJSON renders the events in state (active for scheduled; completed and canceled for
// history) as instance metadata does: a JSON list, [] when there are none, with the
// description of an ended event prefixed [Completed] or [Canceled].
func eventsJSON(events []Event, history bool) string {
	type wire struct {
		NotBefore   string `json:"NotBefore"`
		Code        string `json:"Code"`
		Description string `json:"Description"`
		EventID     string `json:"EventId"`
		NotAfter    string `json:"NotAfter,omitempty"`
		State       string `json:"State"`
	}
	out := []wire{}
	for _, e := range events {
		st := cmpOr(e.State, EventActive)
		if (st != EventActive) != history {
			continue
		}
		w := wire{NotBefore: e.NotBefore.UTC().Format(EventTime), Code: e.Code, Description: EndedDescription(e), EventID: e.ID, State: st}
		if !e.NotAfter.IsZero() {
			w.NotAfter = e.NotAfter.UTC().Format(EventTime)
		}
		out = append(out, w)
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return string(b)
}

// EndedDescription is the event's description as AWS shows it: "[Completed] ..." or
// "[Canceled] ..." once the event ended.
func EndedDescription(e Event) string {
	switch e.State {
	case EventCompleted:
		return "[Completed] " + e.Description
	case EventCanceled:
		return "[Canceled] " + e.Description
	}
	return e.Description
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// item renders one metadata path for the instance; false means 404.
func item(in Instance, path string) (string, bool) {
	const md = "/latest/meta-data/"
	switch {
	case path == "/latest/dynamic/instance-identity/document":
		return identityDocument(in), true
	case path == "/latest/meta-data" || path == md:
		return strings.Join(listing(in), "\n"), true
	case strings.HasPrefix(path, md):
	default:
		return "", false
	}
	p := strings.TrimPrefix(path, md)
	switch p {
	case "instance-id":
		return in.ID, true
	case "local-ipv4":
		return in.PrivateIP, true
	case "placement/availability-zone":
		return in.AZ, true
	case "placement/region":
		return region(in), true
	case "placement", "placement/":
		return "availability-zone\nregion", true
	case "instance-type":
		return in.InstanceType, true
	case "autoscaling/target-lifecycle-state":
		if in.ASG == "" {
			return "", false
		}
		if in.TargetLifecycleState == "" {
			return StateInService, true
		}
		return in.TargetLifecycleState, true
	case "spot/instance-action":
		if in.SpotAction == nil {
			return "", false
		}
		b, _ := json.Marshal(struct {
			Action string `json:"action"`
			Time   string `json:"time"`
		}{in.SpotAction.Action, in.SpotAction.Time.UTC().Format(time.RFC3339)})
		return string(b), true
	case "spot/termination-time":
		if in.SpotAction == nil || in.SpotAction.Action != "terminate" {
			return "", false
		}
		return in.SpotAction.Time.UTC().Format(time.RFC3339), true
	case "events", "events/":
		if in.RebalanceAt != nil {
			return "maintenance/\nrecommendations/", true
		}
		return "maintenance/", true
	case "events/maintenance", "events/maintenance/":
		return "history\nscheduled", true
	case "events/maintenance/scheduled":
		return eventsJSON(in.Events, false), true
	case "events/maintenance/history":
		return eventsJSON(in.Events, true), true
	case "events/recommendations/rebalance":
		if in.RebalanceAt == nil {
			return "", false
		}
		b, _ := json.Marshal(struct {
			NoticeTime string `json:"noticeTime"`
		}{in.RebalanceAt.UTC().Format(time.RFC3339)})
		return string(b), true
	case "tags/instance", "tags/instance/":
		if !in.TagsEnabled {
			return "", false
		}
		return strings.Join(slices.Sorted(maps.Keys(in.Tags)), "\n"), true
	}
	if key, ok := strings.CutPrefix(p, "tags/instance/"); ok && in.TagsEnabled {
		v, ok := in.Tags[key]
		return v, ok
	}
	return "", false
}

// region is the instance's region, derived from its availability zone when not set
// (us-east-1a is in us-east-1).
func region(in Instance) string {
	if in.Region != "" || len(in.AZ) < 2 {
		return in.Region
	}
	return strings.TrimRight(in.AZ, "abcdefghijklmnopqrstuvwxyz")
}

func listing(in Instance) []string {
	l := []string{"events/", "instance-id", "instance-type", "local-ipv4", "placement/"}
	if in.ASG != "" {
		l = append(l, "autoscaling/")
	}
	if in.SpotAction != nil {
		l = append(l, "spot/")
	}
	if in.TagsEnabled {
		l = append(l, "tags/")
	}
	slices.Sort(l)
	return l
}

func identityDocument(in Instance) string {
	doc := struct {
		AccountID        string `json:"accountId"`
		Architecture     string `json:"architecture"`
		AvailabilityZone string `json:"availabilityZone"`
		ImageID          string `json:"imageId"`
		InstanceID       string `json:"instanceId"`
		InstanceType     string `json:"instanceType"`
		PrivateIP        string `json:"privateIp"`
		Region           string `json:"region"`
		Version          string `json:"version"`
	}{
		AccountID:        "123456789012",
		Architecture:     "x86_64",
		AvailabilityZone: in.AZ,
		ImageID:          "ami-00000000000000000",
		InstanceID:       in.ID,
		InstanceType:     in.InstanceType,
		PrivateIP:        in.PrivateIP,
		Region:           region(in),
		Version:          "2017-09-30",
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}
