package awsfront

// The lifecycle states the front shows in moto's describe answers for instances it holds or
// moves on.

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
)

var instanceIDRe = regexp.MustCompile(`<InstanceId>([^<]+)</InstanceId>`)

// overlayStatesLocked is the lifecycle state the front shows for each instance it holds or
// moves on (moto knows nothing of Pending:Wait or Terminating:Wait). f.mu is held.
func (f *Front) overlayStatesLocked() map[string]string {
	states := map[string]string{}
	for k, h := range f.holds {
		if len(h.actions) == 0 {
			continue
		}
		st := h.actions[0].State
		if st == StateTerminated || st == StateInService || strings.HasPrefix(st, "Warmed:") {
			continue // warm pool instances are not the group's (withPoolInstances lists them)
		}
		if _, ok := states[k.instanceID]; ok && h.settled {
			continue // the instance's waiting hold speaks
		}
		states[k.instanceID] = st
	}
	return states
}

// describeWithOverlay forwards to moto and shows the front's lifecycle states for instances
// it holds or moves on.
func (f *Front) describeWithOverlay(c *call) {
	f.launchMu.RLock()
	defer f.launchMu.RUnlock()
	resp, err := f.motoDo(c.r.Context(), c.r.Method, c.r.URL.RequestURI(), c.body, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", err.Error())
		return
	}
	if resp.status == http.StatusOK {
		f.mu.Lock()
		states := f.overlayStatesLocked()
		desired := f.desiredOverlayLocked()
		f.mu.Unlock()
		if len(states) > 0 {
			resp.body = overlayStates(resp.body, states)
		}
		if len(desired) > 0 {
			resp.body = overlayDesired(resp.body, desired)
		}
		resp.body = f.describeExtras(c.req, resp.body)
	}
	copyResp(c.w, resp)
}

// overlayStates rewrites LifecycleState inside each innermost <member> whose InstanceId has a
// state (instance members hold no nested members).
func overlayStates(body []byte, states map[string]string) []byte {
	openTag, closeTag := []byte("<LifecycleState>"), []byte("</LifecycleState>")
	var out []byte
	pos := 0
	for _, m := range instanceIDRe.FindAllSubmatchIndex(body, -1) {
		st, ok := states[string(body[m[2]:m[3]])]
		if !ok || m[0] < pos {
			continue
		}
		endRel := bytes.Index(body[m[1]:], []byte("</member>"))
		if endRel < 0 {
			continue
		}
		end := m[1] + endRel
		start := max(bytes.LastIndex(body[:m[0]], []byte("<member>")), pos)
		seg := body[start:end]
		i, j := bytes.Index(seg, openTag), bytes.Index(seg, closeTag)
		if i < 0 || j < i {
			continue
		}
		out = append(out, body[pos:start+i+len(openTag)]...)
		out = append(out, st...)
		out = append(out, body[start+j:end]...)
		pos = end
	}
	return append(out, body[pos:]...)
}
