package awsfront

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/dnsfake"
)

// motoSource feeds the DNS server from moto's hosted zones. An answer reflects every Route 53
// write that has returned to its caller: the front counts such writes (Front.r53Writes, bumped
// before the write's answer is sent), and a read of moto serves later queries only while that
// count is unchanged. Queries that arrive together share one read (a thousand agents asking at
// once cost moto one read, as the VPC resolver would not slow down for them).
type motoSource struct {
	f     *Front
	mu    sync.Mutex
	reads map[string]*sourceRead // by "zones" or "sets/<zone id>"
}

// sourceRead is one read of moto, shared by the queries that arrive while it is current.
type sourceRead struct {
	writes uint64 // Front.r53Writes when the read started
	done   chan struct{}
	val    any
	err    error
}

var _ dnsfake.Source = (*motoSource)(nil)

// shared returns what read gives, from a read started after the last Route 53 write returned:
// the current one when there is one, else a new one.
func (s *motoSource) shared(ctx context.Context, key string, read func(context.Context) (any, error)) (any, error) {
	writes := s.f.r53Writes.Load()
	s.mu.Lock()
	if s.reads == nil {
		s.reads = map[string]*sourceRead{}
	}
	r := s.reads[key]
	if r == nil || r.writes != writes {
		r = &sourceRead{writes: writes, done: make(chan struct{})}
		s.reads[key] = r
		s.mu.Unlock()
		// Detached from this query: the others waiting on it must not fail with its deadline.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		r.val, r.err = read(rctx)
		cancel()
		if r.err != nil || s.f.r53Writes.Load() != writes {
			s.mu.Lock()
			if s.reads[key] == r {
				delete(s.reads, key) // never serve an error or a read a write overtook to later queries
			}
			s.mu.Unlock()
		}
		close(r.done)
		return r.val, r.err
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.val, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Zones lists moto's hosted zones.
func (s *motoSource) Zones(ctx context.Context) ([]dnsfake.Zone, error) {
	v, err := s.shared(ctx, "zones", func(ctx context.Context) (any, error) { return s.readZones(ctx) })
	if err != nil {
		return nil, err
	}
	return v.([]dnsfake.Zone), nil
}

// RecordSets lists a zone's record sets.
func (s *motoSource) RecordSets(ctx context.Context, zoneID string) ([]dnsfake.RecordSet, error) {
	zoneID = strings.TrimPrefix(zoneID, "/hostedzone/")
	v, err := s.shared(ctx, "sets/"+zoneID, func(ctx context.Context) (any, error) { return s.readRecordSets(ctx, zoneID) })
	if err != nil {
		return nil, err
	}
	return v.([]dnsfake.RecordSet), nil
}

func (s *motoSource) readZones(ctx context.Context) ([]dnsfake.Zone, error) {
	var zones []dnsfake.Zone
	marker := ""
	for range 1000 {
		uri := "/2013-04-01/hostedzone?maxitems=100"
		if marker != "" {
			uri += "&marker=" + url.QueryEscape(marker)
		}
		resp, err := s.f.motoDo(ctx, http.MethodGet, uri, nil, nil)
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusOK {
			return nil, fmt.Errorf("list hosted zones: moto answered %d", resp.status)
		}
		var out struct {
			Zones []struct {
				ID   string `xml:"Id"`
				Name string `xml:"Name"`
			} `xml:"HostedZones>HostedZone"`
			Truncated  bool   `xml:"IsTruncated"`
			NextMarker string `xml:"NextMarker"`
		}
		if err := xml.Unmarshal(resp.body, &out); err != nil {
			return nil, fmt.Errorf("parse hosted zones: %w", err)
		}
		for _, z := range out.Zones {
			zones = append(zones, dnsfake.Zone{ID: strings.TrimPrefix(z.ID, "/hostedzone/"), Name: fqdn(z.Name)})
		}
		if !out.Truncated || out.NextMarker == "" {
			return zones, nil
		}
		marker = out.NextMarker
	}
	return nil, fmt.Errorf("list hosted zones: moto kept paging")
}

func (s *motoSource) readRecordSets(ctx context.Context, zoneID string) ([]dnsfake.RecordSet, error) {
	sets, status, _, err := s.f.motoRecordSets(ctx, zoneID)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("record sets of zone %s: moto answered %d", zoneID, status)
	}
	out := make([]dnsfake.RecordSet, 0, len(sets))
	for _, rs := range sets {
		r := dnsfake.RecordSet{
			Name:          fqdn(rs.Name),
			Type:          strings.ToUpper(rs.Type),
			Values:        rs.Values,
			SetIdentifier: rs.SetIdentifier,
			Failover:      rs.Failover,
			MultiValue:    rs.MultiValueAnswer != nil && *rs.MultiValueAnswer,
			Weight:        rs.Weight,
			HealthCheckID: rs.HealthCheckID,
		}
		if rs.TTL != nil {
			r.TTL = *rs.TTL
		}
		out = append(out, r)
	}
	return out, nil
}
