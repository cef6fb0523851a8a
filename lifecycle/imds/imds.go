// Package imds reads what the agent needs from EC2 instance metadata (IMDSv2 only): the
// node's identity, the signals of its end (Auto Scaling target lifecycle state, spot
// interruption notice, rebalance recommendation) and its instance's scheduled events.
package imds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	awsimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/swarm-agent/swarm-agent/lifecycle"
	"github.com/swarm-agent/swarm-agent/swarm"
)

// API is the part of the SDK's IMDS client used here; *imds.Client satisfies it.
type API interface {
	GetMetadata(ctx context.Context, in *awsimds.GetMetadataInput, optFns ...func(*awsimds.Options)) (*awsimds.GetMetadataOutput, error)
}

// Client reads instance metadata.
type Client struct{ api API }

// New wraps an SDK IMDS client (built with EnableFallback false: IMDSv2 only).
func New(api API) *Client { return &Client{api: api} }

// ErrNotFound is a 404 from IMDS: the item does not exist (no notice, tags disabled, ...).
var ErrNotFound = errors.New("not in instance metadata")

var (
	instanceIDRe = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	// A region: us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-isob-east-1.
	regionRe = regexp.MustCompile(`^` + regionShape + `$`)
	// A zone of a region: us-east-1a; a Local Zone: us-west-2-lax-1a; a Wavelength Zone:
	// us-east-1-wl1-bos-wlz-1.
	azRe           = regexp.MustCompile(`^(` + regionShape + `)(?:[a-z]|-[a-z]+-\d{1,2}[a-z]|-wl\d-[a-z]+-wlz-\d{1,2})$`)
	instanceTypeRe = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`) // t3.medium, m7i-flex.large, u-6tb1.metal
	tagKeyRe       = regexp.MustCompile(`^[^/\s][^/]{0,127}$`)
)

const regionShape = `[a-z]{2}(?:-[a-z]+)+-\d{1,2}`

// ValidRegion reports whether s has the shape of an AWS region name (at most 32 bytes).
func ValidRegion(s string) bool { return len(s) <= 32 && regionRe.MatchString(s) }

// ValidAZ reports whether s has the shape of an availability zone name, Local and Wavelength
// Zones included (at most 64 bytes).
func ValidAZ(s string) bool { return len(s) <= 64 && azRe.MatchString(s) }

// AZRegion is the region of a zone that ValidAZ accepts: us-west-2 for us-west-2-lax-1a.
func AZRegion(az string) string {
	if m := azRe.FindStringSubmatch(az); m != nil {
		return m[1]
	}
	return ""
}

// ValidInstanceType reports whether s has the shape of an EC2 instance type (at most 64 bytes).
func ValidInstanceType(s string) bool { return len(s) <= 64 && instanceTypeRe.MatchString(s) }

// get reads one path as trimmed text; ErrNotFound (wrapped) for 404.
func (c *Client) get(ctx context.Context, path string) (string, error) {
	out, err := c.api.GetMetadata(ctx, &awsimds.GetMetadataInput{Path: path})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
			return "", fmt.Errorf("imds %s: %w", path, ErrNotFound)
		}
		return "", fmt.Errorf("imds %s: %w", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 64<<10))
	if err != nil {
		return "", fmt.Errorf("imds %s: read body: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Identity reads and validates the instance's identity; a malformed answer is an error that
// names the path and the value.
func (c *Client) Identity(ctx context.Context) (swarm.Identity, error) {
	var id swarm.Identity
	fields := []struct {
		path  string
		dst   *string
		valid func(string) bool
		rule  string
	}{
		{"instance-id", &id.InstanceID, instanceIDRe.MatchString, "an instance id (i- and 8 or 17 hex digits)"},
		{"local-ipv4", &id.PrivateIP, func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is4() }, "an IPv4 address"},
		{"placement/availability-zone", &id.AZ, ValidAZ, "an availability zone such as us-east-1a or us-west-2-lax-1a"},
		{"placement/region", &id.Region, ValidRegion, "a region such as us-east-1"},
		{"instance-type", &id.InstanceType, ValidInstanceType, "an instance type such as t3.medium"},
	}
	// The first read alone (it takes the session token that the client then reuses: a
	// metadata service that does not answer fails once, as before), then the others and the
	// tags at once: they are independent. Errors are reported in the fields' order.
	vals := make([]string, len(fields))
	errs := make([]error, len(fields))
	vals[0], errs[0] = c.get(ctx, fields[0].path)
	var (
		tags   map[string]string
		tagErr error
		wg     sync.WaitGroup
	)
	if errs[0] == nil {
		for i, f := range fields[1:] {
			wg.Go(func() { vals[i+1], errs[i+1] = c.get(ctx, f.path) })
		}
		wg.Go(func() { tags, tagErr = c.Tags(ctx) })
		wg.Wait()
	}
	for i, f := range fields {
		if errs[i] != nil {
			return swarm.Identity{}, errs[i]
		}
		if !f.valid(vals[i]) {
			return swarm.Identity{}, fmt.Errorf("imds %s: answered %q, want %s", f.path, clip(vals[i]), f.rule)
		}
		*f.dst = vals[i]
	}
	if r := AZRegion(id.AZ); r != id.Region {
		return swarm.Identity{}, fmt.Errorf("imds placement/availability-zone: answered %q, want a zone of %s (placement/region)", id.AZ, id.Region)
	}
	if tagErr != nil && !errors.Is(tagErr, ErrNotFound) {
		return swarm.Identity{}, tagErr
	}
	id.Tags = tags
	return id, nil
}

// tagReads bounds the tag reads Tags makes at once.
const tagReads = 8

// Tags reads the instance's tags; ErrNotFound (wrapped) when metadata tags are disabled.
func (c *Client) Tags(ctx context.Context) (map[string]string, error) {
	list, err := c.get(ctx, "tags/instance")
	if err != nil {
		return nil, err
	}
	keys := strings.Fields(list)
	for _, key := range keys {
		if !tagKeyRe.MatchString(key) {
			return nil, fmt.Errorf("imds tags/instance: key %q is not a valid tag key", clip(key))
		}
	}
	// One read per tag, tagReads at a time: an instance has at most 50 tags of its own, but
	// the list is an answer from outside, and a long one must not start a read for each key
	// at once.
	vals := make([]string, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	slots := make(chan struct{}, tagReads)
	for i, key := range keys {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			vals[i], errs[i] = c.get(ctx, "tags/instance/"+key)
		})
	}
	wg.Wait()
	tags := make(map[string]string, len(keys))
	for i, key := range keys {
		if errs[i] != nil {
			return nil, errs[i]
		}
		tags[key] = vals[i]
	}
	return tags, nil
}

// TargetLifecycleState reads autoscaling/target-lifecycle-state (InService, Terminated, ...);
// ErrNotFound (wrapped) when the instance is in no Auto Scaling group.
func (c *Client) TargetLifecycleState(ctx context.Context) (string, error) {
	v, err := c.get(ctx, "autoscaling/target-lifecycle-state")
	if err != nil {
		return "", err
	}
	return ParseTargetLifecycleState(v)
}

// ParseTargetLifecycleState checks the body of autoscaling/target-lifecycle-state: a lifecycle
// state's shape (letters, at most three of them colon-separated parts, up to 64 bytes), such as
// InService, Terminated, Standby, Detached or Warmed:Stopped. A state Auto Scaling may add
// later passes; callers act only on the ones they know.
func ParseTargetLifecycleState(v string) (string, error) {
	bad := v == "" || len(v) > 64 || strings.Count(v, ":") > 2
	for _, part := range strings.Split(v, ":") {
		if part == "" {
			bad = true
		}
		for _, r := range part {
			if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
				bad = true
			}
		}
	}
	if bad {
		return "", fmt.Errorf("imds autoscaling/target-lifecycle-state: answered %q, want a lifecycle state", clip(v))
	}
	return v, nil
}

// SpotAction is a spot interruption notice.
type SpotAction struct {
	Action string    // terminate | stop | hibernate
	Time   time.Time // when it happens
}

// SpotInstanceAction reads spot/instance-action; ErrNotFound (wrapped) without a notice.
func (c *Client) SpotInstanceAction(ctx context.Context) (SpotAction, error) {
	v, err := c.get(ctx, "spot/instance-action")
	if err != nil {
		return SpotAction{}, err
	}
	return ParseSpotAction([]byte(v))
}

// ParseSpotAction parses the body of spot/instance-action.
func ParseSpotAction(b []byte) (SpotAction, error) {
	var raw struct {
		Action string `json:"action"`
		Time   string `json:"time"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return SpotAction{}, fmt.Errorf("imds spot/instance-action: %q is not JSON: %w", clip(string(b)), err)
	}
	switch raw.Action {
	case "terminate", "stop", "hibernate":
	default:
		return SpotAction{}, fmt.Errorf("imds spot/instance-action: action %q: want terminate, stop or hibernate", clip(raw.Action))
	}
	t, err := time.Parse(time.RFC3339, raw.Time)
	if err != nil {
		return SpotAction{}, fmt.Errorf("imds spot/instance-action: time %q: want RFC3339", clip(raw.Time))
	}
	return SpotAction{Action: raw.Action, Time: t}, nil
}

// RebalanceRecommendation reads events/recommendations/rebalance and returns its notice
// time; ErrNotFound (wrapped) without a recommendation.
func (c *Client) RebalanceRecommendation(ctx context.Context) (time.Time, error) {
	v, err := c.get(ctx, "events/recommendations/rebalance")
	if err != nil {
		return time.Time{}, err
	}
	var raw struct {
		NoticeTime string `json:"noticeTime"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return time.Time{}, fmt.Errorf("imds events/recommendations/rebalance: %q is not JSON: %w", clip(v), err)
	}
	t, err := time.Parse(time.RFC3339, raw.NoticeTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("imds events/recommendations/rebalance: noticeTime %q: want RFC3339", clip(raw.NoticeTime))
	}
	return t, nil
}

// ScheduledEvents reads events/maintenance/scheduled: the instance's active scheduled
// events (reboots, stops, retirements, host maintenance). No events (an empty list, or 404)
// is nil and no error.
func (c *Client) ScheduledEvents(ctx context.Context) ([]lifecycle.ScheduledEvent, error) {
	v, err := c.get(ctx, "events/maintenance/scheduled")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseScheduledEvents([]byte(v))
}

// ScheduledEventTime is the layout of NotBefore and NotAfter in instance metadata's scheduled
// events: "21 Jan 2019 09:00:43 GMT" (AWS's documented example).
const ScheduledEventTime = "2 Jan 2006 15:04:05 GMT"

// maxEvents bounds the events one answer may list.
const maxEvents = 100

var eventIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ParseScheduledEvents parses the body of events/maintenance/scheduled (or .../history): a
// JSON list of objects with Code, Description, EventId, NotBefore, NotAfter and State, the
// times as "21 Jan 2019 09:00:43 GMT". An empty body or list is no events. It is strict about
// what the agent acts on (an event id of a label value's shape, a known state, a NotBefore it
// can read; a NotAfter when given) and keeps codes it does not know (they are neither
// ScheduledEvent.Stops nor .Reboots); anything else is an error that names the event and
// the field. It never panics.
func ParseScheduledEvents(b []byte) ([]lifecycle.ScheduledEvent, error) {
	const what = "imds events/maintenance/scheduled"
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	var raw []struct {
		Code        string `json:"Code"`
		Description string `json:"Description"`
		EventID     string `json:"EventId"`
		NotBefore   string `json:"NotBefore"`
		NotAfter    string `json:"NotAfter"`
		State       string `json:"State"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %q is not a JSON list of events: %w", what, clip(string(b)), err)
	}
	if len(raw) > maxEvents {
		return nil, fmt.Errorf("%s: %d events, at most %d", what, len(raw), maxEvents)
	}
	var out []lifecycle.ScheduledEvent
	for i, r := range raw {
		if !eventIDRe.MatchString(r.EventID) {
			return nil, fmt.Errorf("%s: event %d: EventId %q: want letters, digits, . _ : - (at most 128)", what, i, clip(r.EventID))
		}
		e := lifecycle.ScheduledEvent{ID: r.EventID, Code: r.Code, Description: clip(r.Description), State: r.State}
		if len(r.Code) > 64 || !printableASCII(r.Code) {
			return nil, fmt.Errorf("%s: event %s: Code %q: want an event code such as system-reboot", what, r.EventID, clip(r.Code))
		}
		switch r.State {
		case lifecycle.EventActive, lifecycle.EventCompleted, lifecycle.EventCanceled:
		case "":
			e.State = lifecycle.EventActive // the scheduled list holds active events only
		default:
			return nil, fmt.Errorf("%s: event %s: State %q: want active, completed or canceled", what, r.EventID, clip(r.State))
		}
		var err error
		if e.NotBefore, err = parseEventTime(r.NotBefore); err != nil {
			return nil, fmt.Errorf("%s: event %s: NotBefore %q: want a time such as %q", what, r.EventID, clip(r.NotBefore), "21 Jan 2019 09:00:43 GMT")
		}
		if r.NotAfter != "" {
			if e.NotAfter, err = parseEventTime(r.NotAfter); err != nil {
				return nil, fmt.Errorf("%s: event %s: NotAfter %q: want a time such as %q", what, r.EventID, clip(r.NotAfter), "21 Jan 2019 09:17:23 GMT")
			}
			if e.NotAfter.Before(e.NotBefore) {
				return nil, fmt.Errorf("%s: event %s: NotAfter %s is before NotBefore %s", what, r.EventID, r.NotAfter, r.NotBefore)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// parseEventTime reads a scheduled event's time: instance metadata's layout, or RFC 3339.
func parseEventTime(s string) (time.Time, error) {
	t, err := time.Parse(ScheduledEventTime, strings.TrimSpace(s))
	if err != nil {
		t, err = time.Parse(time.RFC3339, strings.TrimSpace(s))
	}
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

func printableASCII(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
