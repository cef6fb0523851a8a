package awsfront

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/dnsfake"
)

// motoSource feeds the DNS server from moto's hosted zones, read per query so that an answer
// reflects a change as soon as ChangeResourceRecordSets has returned.
type motoSource struct{ f *Front }

var _ dnsfake.Source = (*motoSource)(nil)

// Zones lists moto's hosted zones.
func (s *motoSource) Zones(ctx context.Context) ([]dnsfake.Zone, error) {
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

// RecordSets lists a zone's record sets.
func (s *motoSource) RecordSets(ctx context.Context, zoneID string) ([]dnsfake.RecordSet, error) {
	zoneID = strings.TrimPrefix(zoneID, "/hostedzone/")
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
