package awsfront

// Reading record sets: ListResourceRecordSets in Route 53's order and paging, from moto's sets,
// and the calls to moto they rest on.

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

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

// reversedName orders names as Route 53 does: labels reversed, with the trailing dot
// (com.example.www.). The dot matters: Route 53's documentation notes that it changes the
// order when a name holds a character below '.' in ASCII, such as '-': "managers-b" sorts
// before "managers" and its subtree, so a name's subtree stays contiguous in a listing.
func reversedName(n string) string {
	labels := strings.Split(normName(n), ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".") + "."
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
