package awsfront

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
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

// sameSet reports whether a DELETE's set matches the current one exactly.
func sameSet(a, b *rrset) bool {
	i64 := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	mv := func(p *bool) bool { return p != nil && *p }
	if i64(a.TTL) != i64(b.TTL) || i64(a.Weight) != i64(b.Weight) || a.Failover != b.Failover ||
		a.HealthCheckID != b.HealthCheckID || mv(a.MultiValueAnswer) != mv(b.MultiValueAnswer) ||
		a.Region != b.Region {
		return false
	}
	if (a.Alias == nil) != (b.Alias == nil) {
		return false
	}
	if a.Alias != nil && (normName(a.Alias.DNSName) != normName(b.Alias.DNSName) ||
		a.Alias.HostedZoneID != b.Alias.HostedZoneID || a.Alias.EvaluateTargetHealth != b.Alias.EvaluateTargetHealth) {
		return false
	}
	va, vb := append([]string(nil), a.Values...), append([]string(nil), b.Values...)
	if len(va) != len(vb) {
		return false
	}
	sort.Strings(va)
	sort.Strings(vb)
	for i := range va {
		if va[i] != vb[i] {
			return false
		}
	}
	return true
}

type changeBatchRequest struct {
	Changes []struct {
		Action string `xml:"Action"`
		Set    rrset  `xml:"ResourceRecordSet"`
	} `xml:"ChangeBatch>Changes>Change"`
}

// checkSet applies the per-set rules that AWS rejects before looking at the zone.
func checkSet(s *rrset) string {
	switch {
	case s.Failover != "" && s.Failover != "PRIMARY" && s.Failover != "SECONDARY":
		return fmt.Sprintf("Invalid failover value %q for resource record set %s: must be PRIMARY or SECONDARY", s.Failover, s.describe())
	case s.Failover != "" && s.SetIdentifier == "":
		return fmt.Sprintf("A failover resource record set %s must have a SetIdentifier", s.describe())
	case s.MultiValueAnswer != nil && *s.MultiValueAnswer && s.SetIdentifier == "":
		return fmt.Sprintf("A multivalue answer resource record set %s must have a SetIdentifier", s.describe())
	case s.MultiValueAnswer != nil && *s.MultiValueAnswer && strings.EqualFold(s.Type, "CNAME"):
		return fmt.Sprintf("Multivalue answer routing is not supported for CNAME resource record set %s", s.describe())
	case s.Weight != nil && (*s.Weight < 0 || *s.Weight > 255):
		return fmt.Sprintf("Invalid weight %d for resource record set %s: must be between 0 and 255", *s.Weight, s.describe())
	case s.Weight != nil && s.SetIdentifier == "":
		return fmt.Sprintf("A weighted resource record set %s must have a SetIdentifier", s.describe())
	case s.SetIdentifier != "" && s.routing() == "other":
		return fmt.Sprintf("Resource record set %s has a SetIdentifier but no routing policy", s.describe())
	}
	return ""
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

// zoneApex is the zone's own name, from its SOA set (every zone has one).
func zoneApex(sets []rrset) string {
	for i := range sets {
		if strings.EqualFold(sets[i].Type, "SOA") {
			return fqdn(sets[i].Name)
		}
	}
	return ""
}

// routingKind names a routing policy as Route 53's messages do.
func routingKind(s *rrset) string {
	if s.routing() == "multivalue" {
		return "multivalue answer"
	}
	return s.routing()
}

// batchConflicts checks the sets the batch wrote against the zone as the batch leaves it, with
// Route 53's messages: a CNAME shares its name with no other record; a set without
// SetIdentifier shares its name and type with no other set; sets with identifiers that share a
// name and type share one routing policy; a failover pair has one PRIMARY and one SECONDARY.
// The zone is judged after the whole batch, so a batch that deletes the old set and creates
// its replacement passes in either order.
func batchConflicts(state map[rrKey]*rrset, written []rrKey, zone string) []string {
	isNew := map[rrKey]bool{}
	for _, k := range written {
		isNew[k] = true
	}
	byName := map[string][]rrKey{}
	for k := range state {
		byName[k.name] = append(byName[k.name], k)
	}
	var msgs []string
	seen, judged := map[string]bool{}, map[rrKey]bool{}
	add := func(m string) {
		if !seen[m] {
			seen[m] = true
			msgs = append(msgs, m)
		}
	}
	for _, k := range written {
		s := state[k]
		if s == nil || judged[k] {
			continue // deleted again later in the batch, or already judged
		}
		judged[k] = true
		name := fqdn(k.name)
		var otherType, oldCNAME bool
		var peers []*rrset
		for _, o := range byName[k.name] {
			switch {
			case o == k:
			case o.typ != k.typ:
				otherType = true
				oldCNAME = oldCNAME || (o.typ == "CNAME" && !isNew[o])
			default:
				peers = append(peers, state[o])
			}
		}
		// Wording quoted from Route 53 answers (see the package's conformance test).
		switch {
		case k.typ == "CNAME" && otherType:
			add(fmt.Sprintf("RRSet of type CNAME with DNS name %s is not permitted as it conflicts with other records with the same DNS name in zone %s", name, zone))
		case k.typ != "CNAME" && oldCNAME:
			add(fmt.Sprintf("RRSet of type %s with DNS name %s is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone %s", k.typ, name, zone))
		}
		if len(peers) == 0 {
			continue
		}
		if s.SetIdentifier == "" {
			add(fmt.Sprintf("RRSet with DNS name %s, type %s cannot be created as other RRSets exist with the same name and type.", name, k.typ))
			continue
		}
		for _, p := range peers {
			if p.routing() != s.routing() {
				add(fmt.Sprintf("RRSet with DNS name %s, type %s, SetIdentifier %s cannot be created because a non %s rrset exists with the same name and type.",
					name, k.typ, s.SetIdentifier, routingKind(s)))
				break
			}
		}
		for _, p := range peers {
			if s.Failover != "" && strings.EqualFold(p.Failover, s.Failover) {
				// AWS's wording for this case is not on record; this follows its latency message
				// ("... and Region Name=eu-west-1 cannot be created because a latency RRSet with
				// the same name, type and region already exists.").
				add(fmt.Sprintf("RRSet with DNS name %s, type %s, SetIdentifier %s, and Failover Type=%s cannot be created because a failover RRSet with the same name, type and failover type already exists.",
					name, k.typ, s.SetIdentifier, strings.ToUpper(s.Failover)))
				break
			}
		}
	}
	return msgs
}

// writeInvalidChangeBatch answers a refused batch as Route 53 does: an ErrorResponse with code
// InvalidChangeBatch whose message lists every reason in brackets, joined by ", ". (Route 53
// once answered <InvalidChangeBatch><Messages>, which botocore cannot read; it no longer does.)
func writeInvalidChangeBatch(c *call, msgs []string) {
	c.writeError(http.StatusBadRequest, "InvalidChangeBatch", "["+strings.Join(msgs, ", ")+"]")
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

// readRecordSets reads the zone's sets from moto; on failure it answers the call (moto's own
// error, such as NoSuchHostedZone, passed through) and reports false.
func (f *Front) readRecordSets(c *call, zone string) ([]rrset, bool) {
	sets, status, raw, err := f.motoRecordSets(c.r.Context(), zone)
	if err != nil {
		c.writeError(http.StatusInternalServerError, "InternalFailure", "read record sets: "+err.Error())
		return nil, false
	}
	if status != http.StatusOK {
		c.w.Header().Set("Content-Type", "text/xml")
		c.w.WriteHeader(status)
		_, _ = c.w.Write(raw)
		return nil, false
	}
	return sets, true
}

// listRecordSets serves ListResourceRecordSets from moto's sets in AWS order and paging.
func (f *Front) listRecordSets(c *call) {
	zone := zoneIDFromPath(c.r.URL.Path)
	sets, ok := f.readRecordSets(c, zone)
	if !ok {
		return
	}
	q := c.r.URL.Query()
	maxItems := 300
	if v := q.Get("maxitems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.writeError(http.StatusBadRequest, "InvalidInput", fmt.Sprintf("maxitems %q: must be a positive integer", v))
			return
		}
		maxItems = min(n, 300)
	}
	sortSets(sets)
	start := 0
	if name := q.Get("name"); name != "" {
		from := rrKey{normName(name), strings.ToUpper(q.Get("type")), q.Get("identifier")}
		start = sort.Search(len(sets), func(i int) bool { return !lessKey(sets[i].key(), from) })
	} else if q.Get("type") != "" {
		c.writeError(http.StatusBadRequest, "InvalidInput", "type was specified without name")
		return
	}
	page := sets[start:]
	truncated := len(page) > maxItems
	if truncated {
		page = page[:maxItems]
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n" + `<ListResourceRecordSetsResponse xmlns="` + route53NS + `"><ResourceRecordSets>`)
	for _, s := range page {
		b.WriteString("<ResourceRecordSet>" + s.Raw + "</ResourceRecordSet>")
	}
	b.WriteString("</ResourceRecordSets>")
	fmt.Fprintf(&b, "<IsTruncated>%t</IsTruncated>", truncated)
	if truncated {
		next := sets[start+maxItems]
		b.WriteString("<NextRecordName>" + xmlEsc(fqdn(next.Name)) + "</NextRecordName><NextRecordType>" + xmlEsc(next.Type) + "</NextRecordType>")
		if next.SetIdentifier != "" {
			b.WriteString("<NextRecordIdentifier>" + xmlEsc(next.SetIdentifier) + "</NextRecordIdentifier>")
		}
	}
	fmt.Fprintf(&b, "<MaxItems>%d</MaxItems></ListResourceRecordSetsResponse>", maxItems)
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(c.w, b.String())
}

// reversedName orders names as Route 53 does: labels reversed (com.example.www).
func reversedName(n string) string {
	labels := strings.Split(normName(n), ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".")
}

func lessKey(a, b rrKey) bool {
	ra, rb := reversedName(a.name), reversedName(b.name)
	if ra != rb {
		return ra < rb
	}
	if a.typ != b.typ {
		return a.typ < b.typ
	}
	return a.id < b.id
}

func sortSets(sets []rrset) {
	sort.SliceStable(sets, func(i, j int) bool { return lessKey(sets[i].key(), sets[j].key()) })
}

var motoSOARe = regexp.MustCompile(`\{(?:&#39;|')Value(?:&#39;|'): (?:&#39;|')([^<]*?)(?:&#39;|')\}`)

// motoRecordSets reads every set of a zone from moto. A non-200 status comes back with moto's body.
func (f *Front) motoRecordSets(ctx context.Context, zone string) ([]rrset, int, []byte, error) {
	var all []rrset
	q := url.Values{"maxitems": {"1000000"}}
	for range 1000 {
		resp, err := f.motoDo(ctx, http.MethodGet, "/2013-04-01/hostedzone/"+url.PathEscape(zone)+"/rrset?"+q.Encode(), nil, nil)
		if err != nil {
			return nil, 0, nil, err
		}
		if resp.status != http.StatusOK {
			return nil, resp.status, resp.body, nil
		}
		// moto renders the SOA value as a Python dict; show the plain value as AWS does.
		body := motoSOARe.ReplaceAll(resp.body, []byte("$1"))
		var out struct {
			Sets      []rrset `xml:"ResourceRecordSets>ResourceRecordSet"`
			Truncated bool    `xml:"IsTruncated"`
			NextName  string  `xml:"NextRecordName"`
			NextType  string  `xml:"NextRecordType"`
			NextIdent string  `xml:"NextRecordIdentifier"`
		}
		if err := xml.Unmarshal(body, &out); err != nil {
			return nil, 0, nil, fmt.Errorf("parse moto record sets of zone %s: %w", zone, err)
		}
		all = append(all, out.Sets...)
		if !out.Truncated {
			return all, http.StatusOK, nil, nil
		}
		q.Set("name", out.NextName)
		q.Set("type", out.NextType)
		if out.NextIdent != "" {
			q.Set("identifier", out.NextIdent)
		} else {
			q.Del("identifier")
		}
	}
	return nil, 0, nil, fmt.Errorf("zone %s: moto kept paging", zone)
}

func zoneIDFromPath(p string) string {
	p = strings.TrimPrefix(p, "/2013-04-01/hostedzone/")
	id, _, _ := strings.Cut(p, "/")
	return id
}

func xmlUnesc(s string) string {
	var v string
	if err := xml.Unmarshal([]byte("<x>"+s+"</x>"), &v); err != nil {
		return s
	}
	return v
}

type motoResp struct {
	status int
	header http.Header
	body   []byte
}

// motoDo sends one request straight to moto. Without a header it signs like the SDK would, as far
// as moto cares: an Authorization header naming the service.
func (f *Front) motoDo(ctx context.Context, method, uri string, body []byte, h http.Header) (*motoResp, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(f.cfg.MotoURL, "/")+uri, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if h != nil {
		for k, v := range h {
			if k == "Content-Length" {
				continue
			}
			req.Header[k] = v
		}
	} else {
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20250101/"+f.cfg.Region+"/route53/aws4_request, SignedHeaders=host, Signature=0")
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("moto %s %s: %w", method, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("moto %s %s: read body: %w", method, uri, err)
	}
	return &motoResp{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func copyResp(w http.ResponseWriter, r *motoResp) {
	for k, v := range r.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}
