package awsfront

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

const route53NS = "https://route53.amazonaws.com/doc/2013-04-01/"

// changePending is how long a change stays PENDING (unless polled often enough first).
const changePending = time.Second

// change is a ChangeResourceRecordSets result that GetChange reports on.
type change struct {
	submitted time.Time
	polls     int
}

// rrset is a resource record set as Route 53 writes it. Raw keeps moto's XML so listings can
// echo every field, including those the front does not interpret.
type rrset struct {
	Raw              string   `xml:",innerxml"`
	Name             string   `xml:"Name"`
	Type             string   `xml:"Type"`
	SetIdentifier    string   `xml:"SetIdentifier"`
	Weight           *int64   `xml:"Weight"`
	Region           string   `xml:"Region"`
	Failover         string   `xml:"Failover"`
	MultiValueAnswer *bool    `xml:"MultiValueAnswer"`
	TTL              *int64   `xml:"TTL"`
	Values           []string `xml:"ResourceRecords>ResourceRecord>Value"`
	Alias            *struct {
		HostedZoneID         string `xml:"HostedZoneId"`
		DNSName              string `xml:"DNSName"`
		EvaluateTargetHealth bool   `xml:"EvaluateTargetHealth"`
	} `xml:"AliasTarget"`
	HealthCheckID string `xml:"HealthCheckId"`
}

type rrKey struct{ name, typ, id string }

func (s *rrset) key() rrKey {
	return rrKey{normName(s.Name), strings.ToUpper(s.Type), s.SetIdentifier}
}

func (s *rrset) routing() string {
	switch {
	case s.Failover != "":
		return "failover"
	case s.MultiValueAnswer != nil && *s.MultiValueAnswer:
		return "multivalue"
	case s.Weight != nil:
		return "weighted"
	case s.Region != "":
		return "latency"
	case s.SetIdentifier != "":
		return "other"
	}
	return "simple"
}

// normName lower-cases a DNS name and strips the final dot (Route 53 compares names this way).
func normName(n string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

func fqdn(n string) string { return normName(n) + "." }

// describe is AWS's way of naming a set in error messages.
func (s *rrset) describe() string {
	d := fmt.Sprintf("[name='%s', type='%s'", fqdn(s.Name), strings.ToUpper(s.Type))
	if s.SetIdentifier != "" {
		d += fmt.Sprintf(", set-identifier='%s'", s.SetIdentifier)
	}
	return d + "]"
}

type changeBatchRequest struct {
	Changes []struct {
		Action string `xml:"Action"`
		Set    rrset  `xml:"ResourceRecordSet"`
	} `xml:"ChangeBatch>Changes>Change"`
}

func (f *Front) zoneLock(zone string) *sync.Mutex {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.zoneLocks[zone]
	if m == nil {
		m = &sync.Mutex{}
		f.zoneLocks[zone] = m
	}
	return m
}

var (
	nameElemRe     = regexp.MustCompile(`<Name>([^<]*)</Name>`)
	createActionRe = regexp.MustCompile(`<Action>\s*CREATE\s*</Action>`)
)

// changeRecordSets validates the whole batch against the zone's current sets, under the zone's
// lock, and forwards it to moto only when AWS would accept it.
func (f *Front) changeRecordSets(c *call) {
	zone := zoneIDFromPath(c.r.URL.Path)
	var req changeBatchRequest
	if err := xml.Unmarshal(c.body, &req); err != nil || len(req.Changes) == 0 {
		c.writeError(http.StatusBadRequest, "InvalidInput", "Invalid XML or empty change batch")
		return
	}
	for i := range req.Changes {
		if msg := identityInput(req.Changes[i].Action, &req.Changes[i].Set); msg != "" {
			c.writeError(http.StatusBadRequest, "InvalidInput", msg)
			return
		}
	}
	var badSets []string
	for i := range req.Changes {
		if msg := checkSet(&req.Changes[i].Set); msg != "" {
			badSets = append(badSets, msg)
		}
	}
	if len(badSets) > 0 {
		writeInvalidChangeBatch(c, badSets)
		return
	}

	lk := f.zoneLock(zone)
	lk.Lock()
	defer lk.Unlock()
	current, ok := f.readRecordSets(c, zone)
	if !ok {
		return
	}
	state := map[rrKey]*rrset{}
	for i := range current {
		state[current[i].key()] = &current[i]
	}
	var msgs []string
	var written []rrKey // sets the batch creates or replaces, in batch order
	apex := zoneApex(current)
	for i := range req.Changes {
		ch := &req.Changes[i]
		s := &ch.Set
		k := s.key()
		if apex != "" && k.name+"." != apex && !strings.HasSuffix(k.name+".", "."+apex) {
			msgs = append(msgs, fmt.Sprintf("RRSet with DNS name %s is not permitted in zone %s", fqdn(k.name), apex))
			continue
		}
		cur := state[k]
		switch strings.ToUpper(ch.Action) {
		case "CREATE":
			if cur != nil {
				msgs = append(msgs, fmt.Sprintf("Tried to create resource record set %s but it already exists", s.describe()))
				continue
			}
			state[k] = s
			written = append(written, k)
		case "DELETE":
			switch {
			case cur == nil:
				msgs = append(msgs, fmt.Sprintf("Tried to delete resource record set %s but it was not found", s.describe()))
				continue
			case !sameSet(cur, s):
				msgs = append(msgs, fmt.Sprintf("Tried to delete resource record set %s but the values provided do not match the current values", s.describe()))
				continue
			}
			delete(state, k)
		case "UPSERT":
			state[k] = s
			written = append(written, k)
		default:
			c.writeError(http.StatusBadRequest, "InvalidInput", fmt.Sprintf("Invalid change action %q", ch.Action))
			return
		}
	}
	msgs = append(msgs, batchConflicts(state, written, apex)...)
	if len(msgs) > 0 {
		writeInvalidChangeBatch(c, msgs)
		return
	}

	// Route 53 stores names in lower case; moto compares them as given.
	fwd := nameElemRe.ReplaceAllFunc(restoreCollateral(c.body, req, state), func(m []byte) []byte {
		return []byte("<Name>" + xmlEsc(fqdn(xmlUnesc(string(m[6:len(m)-7])))) + "</Name>")
	})
	// The batch passed AWS's rules above, under the zone's lock. moto 5.2 refuses a CREATE
	// that repeats an earlier change of its journal whenever any set sorts after the name,
	// even when the set was deleted since (AWS accepts it): forward CREATE as UPSERT, which
	// moto applies as the create it is here.
	fwd = createActionRe.ReplaceAll(fwd, []byte("<Action>UPSERT</Action>"))
	resp, err := f.motoDo(c.r.Context(), http.MethodPost, c.r.URL.RequestURI(), fwd, c.r.Header)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", "forward change batch: "+err.Error())
		return
	}
	if resp.status != http.StatusOK {
		copyResp(c.w, resp)
		return
	}
	var out struct {
		ID        string `xml:"ChangeInfo>Id"`
		Submitted string `xml:"ChangeInfo>SubmittedAt"`
	}
	_ = xml.Unmarshal(resp.body, &out)
	id := strings.TrimPrefix(out.ID, "/change/")
	if id == "" {
		id = f.nextID("C")
	}
	now := time.Now().UTC()
	f.mu.Lock()
	f.changes[id] = &change{submitted: now}
	f.mu.Unlock()
	f.r53Writes.Add(1) // before the caller hears of it: DNS answers from here on show the change
	writeChangeInfo(c, "ChangeResourceRecordSetsResponse", id, "PENDING", now)
}

// restoreCollateral makes moto delete only the sets the batch deletes. moto 5.2 deletes a set
// named with a SetIdentifier in every name and type of the zone (failover sets share the
// identifiers "primary" and "secondary" across names: one cluster's deregistration took
// another cluster's PRIMARY); AWS deletes the one set. Every other set with such an identifier
// that the batch leaves in the zone (state: the zone as the batch leaves it) is written again
// at the end of the same batch, as it stands after the batch.
func restoreCollateral(fwd []byte, req changeBatchRequest, state map[rrKey]*rrset) []byte {
	deleted := map[rrKey]bool{}
	ids := map[string]bool{}
	for i := range req.Changes {
		if s := &req.Changes[i].Set; strings.EqualFold(req.Changes[i].Action, "DELETE") && s.SetIdentifier != "" {
			deleted[s.key()] = true
			ids[s.SetIdentifier] = true
		}
	}
	var keys []rrKey
	for k := range state {
		if ids[k.id] && !deleted[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return fwd
	}
	sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("<Change><Action>UPSERT</Action><ResourceRecordSet>" + state[k].Raw + "</ResourceRecordSet></Change>")
	}
	i := bytes.LastIndex(fwd, []byte("</Changes>"))
	if i < 0 {
		return fwd
	}
	return slices.Concat(fwd[:i], []byte(b.String()), fwd[i:])
}

func writeChangeInfo(c *call, elem, id, status string, submitted time.Time) {
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	fmt.Fprintf(c.w, `<?xml version="1.0"?>`+"\n"+`<%s xmlns="%s"><ChangeInfo><Id>/change/%s</Id><Status>%s</Status><SubmittedAt>%s</SubmittedAt></ChangeInfo></%s>`,
		elem, route53NS, xmlEsc(id), status, submitted.Format(time.RFC3339), elem)
}

// getChange answers PENDING for a while after the change, then INSYNC.
func (f *Front) getChange(c *call) {
	id := strings.TrimPrefix(c.req.Params["Id"], "/change/")
	f.mu.Lock()
	ch := f.changes[id]
	var status string
	var submitted time.Time
	if ch != nil {
		ch.polls++
		submitted = ch.submitted
		status = "PENDING"
		if time.Since(ch.submitted) >= changePending || (ch.polls > 2 && time.Since(ch.submitted) >= changePending/4) {
			status = "INSYNC"
		}
	}
	f.mu.Unlock()
	if ch == nil {
		c.writeError(http.StatusNotFound, "NoSuchChange", fmt.Sprintf("A change with the specified change ID %s does not exist.", c.req.Params["Id"]))
		return
	}
	writeChangeInfo(c, "GetChangeResponse", id, status, submitted)
}
