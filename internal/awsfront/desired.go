package awsfront

import (
	"bytes"
	"net/url"
	"regexp"
	"slices"
	"strconv"
)

// pendingDecrementsLocked counts the group's instances held on their way out whose group
// goes down by one when they go (a scale-in): on AWS its desired capacity is lower at once.
// f.mu is held.
func (f *Front) pendingDecrementsLocked(group string) int {
	n := 0
	for _, h := range f.holds {
		if h.group == group && h.transition == TransitionTerminating && h.decrement && !h.settled {
			n++
		}
	}
	return n
}

// desiredFix is how the front shows a group's desired capacity otherwise than moto.
type desiredFix struct {
	abs   bool // value replaces moto's; else it is added to it
	value int
}

// desiredOverlayLocked is the desired capacity AWS would show for each group that the front
// shows otherwise than moto: a refresh keeps the group's (moto's is one up per replacement
// launched ahead of its old instance's end), and a scale-in held by a hook is lower at once.
// f.mu is held.
func (f *Front) desiredOverlayLocked() map[string]desiredFix {
	out := map[string]desiredFix{}
	for _, h := range f.holds {
		if h.transition == TransitionTerminating && h.decrement && !h.settled {
			fix := out[h.group]
			fix.value--
			out[h.group] = fix
		}
	}
	for g, rs := range f.refreshes {
		for _, r := range rs {
			if r.active() {
				out[g] = desiredFix{abs: true, value: r.Desired}
			}
		}
	}
	return out
}

var desiredRe = regexp.MustCompile(`<DesiredCapacity>(\d+)</DesiredCapacity>`)

// overlayDesired rewrites DesiredCapacity of each group in a DescribeAutoScalingGroups body
// that overlay names (moto writes it after the group's name, before its instances).
func overlayDesired(body []byte, overlay map[string]desiredFix) []byte {
	out := body
	for g, fix := range overlay {
		i := indexAfterMember(out, []byte("<AutoScalingGroupName>"+xmlEsc(g)+"</AutoScalingGroupName>"))
		if i < 0 {
			continue
		}
		m := desiredRe.FindSubmatchIndex(out[i:])
		if m == nil {
			continue
		}
		v := fix.value
		if !fix.abs {
			cur, _ := strconv.Atoi(string(out[i+m[2] : i+m[3]]))
			v += cur
		}
		out = slices.Concat(out[:i+m[2]], []byte(strconv.Itoa(max(v, 0))), out[i+m[3]:])
	}
	return out
}

// indexAfterMember finds the group member that opens with tag and returns the index after it.
func indexAfterMember(body, tag []byte) int {
	open := slices.Concat([]byte("<member>"), tag)
	i := bytes.Index(body, open)
	if i < 0 {
		return -1
	}
	return i + len(open)
}

// addPendingDecrements rewrites a SetDesiredCapacity for moto: the capacity asked for is
// AWS's, which a scale-in held by a hook lowered at once; moto's is lowered only when the
// instance goes, so moto is asked for that many more.
func (f *Front) addPendingDecrements(c *call, group string) {
	f.mu.Lock()
	n := f.pendingDecrementsLocked(group)
	f.mu.Unlock()
	q, err := url.ParseQuery(string(c.body))
	if n == 0 || err != nil {
		return
	}
	d, err := strconv.Atoi(q.Get("DesiredCapacity"))
	if err != nil {
		return
	}
	q.Set("DesiredCapacity", strconv.Itoa(d+n))
	c.body = []byte(q.Encode())
}
