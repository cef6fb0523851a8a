package awsfront

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// StatusChecks are an instance's EC2 status checks as the front shows them in
// DescribeInstanceStatus in place of moto's (which always passes a running instance's).
type StatusChecks struct {
	// System and Instance: ok or impaired (insufficient-data and initializing pass through
	// as given).
	System   string    `json:"system"`
	Instance string    `json:"instance"`
	Since    time.Time `json:"since"` // when the failing check started failing
}

// ScheduleEvent gives the instance a scheduled event, shown in its instance metadata
// (events/maintenance/scheduled while active) and in DescribeInstanceStatus. An empty ID is
// made up as AWS's are (instance-event- and 17 hex digits); the event with ev's ID is
// replaced. It returns the event as stored.
func (f *Front) ScheduleEvent(instanceID string, ev imdsfake.Event) (imdsfake.Event, error) {
	if ev.Code == "" || ev.NotBefore.IsZero() {
		return ev, errors.New("scheduled event needs a code and not_before")
	}
	if ev.ID == "" {
		ev.ID = fmt.Sprintf("instance-event-0%016x", rand.Uint64())
	}
	if ev.State == "" {
		ev.State = imdsfake.EventActive
	}
	ev.NotBefore, ev.NotAfter, ev.NotBeforeDeadline = ev.NotBefore.UTC(), ev.NotAfter.UTC(), ev.NotBeforeDeadline.UTC()
	err := f.imds.Update(instanceID, func(in *imdsfake.Instance) {
		for i, e := range in.Events {
			if e.ID == ev.ID {
				in.Events[i] = ev
				return
			}
		}
		in.Events = append(in.Events, ev)
	})
	if err != nil {
		return ev, fmt.Errorf("schedule event for %s: %w", instanceID, err)
	}
	return ev, f.sendHealthEvent(instanceID, ev)
}

// EndEvent ends the instance's event: state completed (the reboot happened) or canceled. It
// leaves events/maintenance/scheduled for events/maintenance/history, and
// DescribeInstanceStatus shows it with its description prefixed [Completed] or [Canceled].
func (f *Front) EndEvent(instanceID, eventID, state string) error {
	if state != imdsfake.EventCompleted && state != imdsfake.EventCanceled {
		return fmt.Errorf("end event %s: state %q: want completed or canceled", eventID, state)
	}
	found := false
	var ended imdsfake.Event
	err := f.imds.Update(instanceID, func(in *imdsfake.Instance) {
		for i, e := range in.Events {
			if e.ID == eventID {
				in.Events[i].State, found = state, true
				ended = in.Events[i]
			}
		}
	})
	if err != nil {
		return fmt.Errorf("end event %s of %s: %w", eventID, instanceID, err)
	}
	if !found {
		return fmt.Errorf("end event %s of %s: %w", eventID, instanceID, imdsfake.ErrNotFound)
	}
	return f.sendHealthEvent(instanceID, ended)
}

// SetStatusChecks sets what DescribeInstanceStatus says of the instance's status checks; ok
// and ok (or empty values) give moto's answer back.
func (f *Front) SetStatusChecks(instanceID string, sc StatusChecks) error {
	for _, v := range []string{sc.System, sc.Instance} {
		switch v {
		case "", "ok", "impaired", "insufficient-data", "initializing":
		default:
			return fmt.Errorf("status %q: want ok, impaired, insufficient-data or initializing", v)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statuses == nil {
		f.statuses = map[string]StatusChecks{}
	}
	if (sc.System == "" || sc.System == "ok") && (sc.Instance == "" || sc.Instance == "ok") {
		delete(f.statuses, instanceID)
		return nil
	}
	if sc.Since.IsZero() {
		sc.Since = time.Now().UTC()
	}
	f.statuses[instanceID] = sc
	return nil
}

// The wire form of DescribeInstanceStatus (EC2's query protocol), as moto answers it and as
// AWS does with events and failing checks.
type (
	disResponse struct {
		XMLName   xml.Name  `xml:"DescribeInstanceStatusResponse"`
		Xmlns     string    `xml:"xmlns,attr"`
		RequestID string    `xml:"requestId"`
		Items     []disItem `xml:"instanceStatusSet>item"`
		NextToken string    `xml:"nextToken,omitempty"`
	}
	disItem struct {
		AZ             string      `xml:"availabilityZone"`
		InstanceID     string      `xml:"instanceId"`
		State          disState    `xml:"instanceState"`
		InstanceStatus *disSummary `xml:"instanceStatus,omitempty"`
		SystemStatus   *disSummary `xml:"systemStatus,omitempty"`
		Events         []disEvent  `xml:"eventsSet>item,omitempty"`
	}
	disState struct {
		Code int    `xml:"code"`
		Name string `xml:"name"`
	}
	disSummary struct {
		Details []disDetail `xml:"details>item,omitempty"`
		Status  string      `xml:"status"`
	}
	disDetail struct {
		Name          string `xml:"name"`
		Status        string `xml:"status"`
		ImpairedSince string `xml:"impairedSince,omitempty"`
	}
	disEvent struct {
		ID                string `xml:"instanceEventId"`
		Code              string `xml:"code"`
		Description       string `xml:"description"`
		NotBefore         string `xml:"notBefore"`
		NotAfter          string `xml:"notAfter,omitempty"`
		NotBeforeDeadline string `xml:"notBeforeDeadline,omitempty"`
	}
)

// ec2Time is how EC2's query protocol writes times: 2019-03-14T20:00:00.000Z.
const ec2Time = "2006-01-02T15:04:05.000Z"

// describeInstanceStatus asks moto and shows, over its answer, the instances' scheduled
// events (what their instance metadata holds) and the status checks set with
// SetStatusChecks (moto passes every running instance's). A stopped instance's checks are
// not-applicable, as moto says.
func (f *Front) describeInstanceStatus(c *call) {
	resp, err := f.motoDo(c.r.Context(), c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status != http.StatusOK {
		copyResp(c.w, resp)
		return
	}
	var out disResponse
	if err := xml.Unmarshal(resp.body, &out); err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", "front: read moto's DescribeInstanceStatus: "+err.Error())
		return
	}
	f.mu.Lock()
	statuses := make(map[string]StatusChecks, len(f.statuses))
	for id, sc := range f.statuses {
		statuses[id] = sc
	}
	f.mu.Unlock()
	for i := range out.Items {
		it := &out.Items[i]
		if in, ok := f.imds.Get(it.InstanceID); ok {
			for _, e := range in.Events {
				de := disEvent{ID: e.ID, Code: e.Code, Description: imdsfake.EndedDescription(e), NotBefore: e.NotBefore.UTC().Format(ec2Time)}
				if !e.NotAfter.IsZero() {
					de.NotAfter = e.NotAfter.UTC().Format(ec2Time)
				}
				if !e.NotBeforeDeadline.IsZero() {
					de.NotBeforeDeadline = e.NotBeforeDeadline.UTC().Format(ec2Time)
				}
				it.Events = append(it.Events, de)
			}
		}
		sc, ok := statuses[it.InstanceID]
		if !ok || it.State.Name != "running" {
			continue
		}
		it.SystemStatus = summary(sc.System, sc.Since)
		it.InstanceStatus = summary(sc.Instance, sc.Since)
	}
	out.Xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"
	body, err := xml.Marshal(out)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	body = append([]byte(xml.Header), body...)
	c.w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(body)
}

// summary is a status check's summary: its reachability detail passed or failed (with the
// time it started failing).
func summary(status string, since time.Time) *disSummary {
	switch status {
	case "", "ok":
		return &disSummary{Status: "ok", Details: []disDetail{{Name: "reachability", Status: "passed"}}}
	case "impaired":
		return &disSummary{Status: "impaired", Details: []disDetail{{Name: "reachability", Status: "failed", ImpairedSince: since.UTC().Format(ec2Time)}}}
	}
	return &disSummary{Status: status, Details: []disDetail{{Name: "reachability", Status: status}}}
}
