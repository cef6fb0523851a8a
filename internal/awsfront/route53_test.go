package awsfront_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// TestCNAMEBesideOtherRecords: a CNAME shares its name with no other record, as in Route 53;
// a batch that deletes one and creates the other passes whatever its order, and the zone is
// judged as the whole batch leaves it.
func TestCNAMEBesideOtherRecords(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "cn.internal")
	ctx := t.Context()
	cname := func(name, target string) *r53types.ResourceRecordSet {
		return &r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRTypeCname, TTL: aws.Int64(10),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(target)}}}
	}
	a := func(name, value string) *r53types.ResourceRecordSet {
		s := aSet(name, value)
		return &s
	}
	weighted := func(s *r53types.ResourceRecordSet, id string, w int64) *r53types.ResourceRecordSet {
		c := *s
		c.SetIdentifier, c.Weight = aws.String(id), aws.Int64(w)
		return &c
	}
	ch := func(action r53types.ChangeAction, s *r53types.ResourceRecordSet) r53types.Change {
		return r53types.Change{Action: action, ResourceRecordSet: s}
	}
	const (
		create, del, upsert = r53types.ChangeActionCreate, r53types.ChangeActionDelete, r53types.ChangeActionUpsert
		cnameConflict       = "RRSet of type CNAME with DNS name %s is not permitted as it conflicts with other records with the same DNS name in zone cn.internal."
		otherConflict       = "RRSet of type %s with DNS name %s is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone cn.internal."
	)
	steps := []struct {
		name    string
		changes []r53types.Change
		want    string // "" = accepted; else the whole message
	}{
		{"an A set", []r53types.Change{ch(create, a("x.cn.internal.", "10.0.0.1"))}, ""},
		{"CNAME beside it", []r53types.Change{ch(create, cname("x.cn.internal.", "t.example.com"))},
			"[" + fmt.Sprintf(cnameConflict, "x.cn.internal.") + "]"},
		{"UPSERT of a CNAME beside it", []r53types.Change{ch(upsert, cname("X.cn.internal", "t.example.com"))},
			"[" + fmt.Sprintf(cnameConflict, "x.cn.internal.") + "]"},
		{"CNAME created before the A is deleted, in one batch", []r53types.Change{
			ch(create, cname("x.cn.internal.", "t.example.com")), ch(del, a("x.cn.internal.", "10.0.0.1"))}, ""},
		{"TXT beside the CNAME", []r53types.Change{ch(create, &r53types.ResourceRecordSet{Name: aws.String("x.cn.internal."),
			Type: r53types.RRTypeTxt, TTL: aws.Int64(10), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(`"v"`)}}})},
			"[" + fmt.Sprintf(otherConflict, "TXT", "x.cn.internal.") + "]"},
		{"back to an A: delete the CNAME, then create", []r53types.Change{
			ch(del, cname("x.cn.internal.", "t.example.com")), ch(create, a("x.cn.internal.", "10.0.0.2"))}, ""},
		{"weighted CNAMEs share a name", []r53types.Change{
			ch(create, weighted(cname("w.cn.internal.", "one.example.com"), "one", 1)),
			ch(create, weighted(cname("w.cn.internal.", "two.example.com"), "two", 1))}, ""},
		{"a weighted A beside them", []r53types.Change{ch(create, weighted(a("w.cn.internal.", "10.0.0.3"), "three", 1))},
			"[" + fmt.Sprintf(otherConflict, "A", "w.cn.internal.") + "]"},
		{"a CNAME at the apex", []r53types.Change{ch(create, cname("cn.internal.", "t.example.com"))},
			"[" + fmt.Sprintf(cnameConflict, "cn.internal.") + "]"},
		{"a CNAME and an A created together", []r53types.Change{
			ch(create, a("y.cn.internal.", "10.0.0.4")), ch(create, cname("y.cn.internal.", "t.example.com"))},
			"[" + fmt.Sprintf(cnameConflict, "y.cn.internal.") + "]"},
	}
	for _, s := range steps {
		_, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
			ChangeBatch: &r53types.ChangeBatch{Changes: s.changes}})
		var icb *r53types.InvalidChangeBatch
		switch {
		case s.want == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", s.name, err)
		case s.want == "":
		case !errors.As(err, &icb):
			t.Errorf("%s: %v (%T), want *types.InvalidChangeBatch", s.name, err, err)
		case icb.ErrorMessage() != s.want:
			t.Errorf("%s: message\n  %s\nwant\n  %s", s.name, icb.ErrorMessage(), s.want)
		}
	}
	out, err := e.R53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range out.ResourceRecordSets {
		if n := aws.ToString(s.Name); n != "cn.internal." {
			got = append(got, n+" "+string(s.Type)+" "+aws.ToString(s.SetIdentifier))
		}
	}
	if want := "w.cn.internal. CNAME one|w.cn.internal. CNAME two|x.cn.internal. A "; strings.Join(got, "|") != want {
		t.Errorf("sets after the batches: %q, want %q", strings.Join(got, "|"), want)
	}
}

func aSet(name, value string) r53types.ResourceRecordSet {
	return r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRTypeA, TTL: aws.Int64(10),
		ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(value)}}}
}

// TestDeleteTakesOnlyItsSet: a DELETE removes exactly the set it names. Failover sets of
// different names share the identifiers "primary" and "secondary" (two clusters' manager
// records in one zone); moto alone deleted every set of the zone with the identifier, so one
// cluster's deregistration took the other's PRIMARY.
func TestDeleteTakesOnlyItsSet(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "del.internal")
	set := func(name, role, ip string) *r53types.ResourceRecordSet {
		return &r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRTypeA, TTL: aws.Int64(10),
			SetIdentifier: aws.String(strings.ToLower(role)), Failover: r53types.ResourceRecordSetFailover(role),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(ip)}}}
	}
	change := func(changes ...r53types.Change) {
		t.Helper()
		if _, err := e.R53.ChangeResourceRecordSets(t.Context(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
			ChangeBatch: &r53types.ChangeBatch{Changes: changes}}); err != nil {
			t.Fatal(err)
		}
	}
	const create, del = r53types.ChangeActionCreate, r53types.ChangeActionDelete
	a1, a2 := set("a.del.internal", "PRIMARY", "10.0.0.1"), set("a.del.internal", "SECONDARY", "10.0.0.2")
	b1, b2 := set("b.del.internal", "PRIMARY", "10.0.1.1"), set("b.del.internal", "SECONDARY", "10.0.1.2")
	change(r53types.Change{Action: create, ResourceRecordSet: a1}, r53types.Change{Action: create, ResourceRecordSet: a2})
	change(r53types.Change{Action: create, ResourceRecordSet: b1}, r53types.Change{Action: create, ResourceRecordSet: b2})
	// a's PRIMARY leaves: its SECONDARY is promoted in the same batch (what Deregister sends).
	change(r53types.Change{Action: del, ResourceRecordSet: a1}, r53types.Change{Action: del, ResourceRecordSet: a2},
		r53types.Change{Action: create, ResourceRecordSet: set("a.del.internal", "PRIMARY", "10.0.0.2")})
	out, err := e.R53.ListResourceRecordSets(t.Context(), &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range out.ResourceRecordSets {
		if s.Type == r53types.RRTypeA {
			got = append(got, fmt.Sprintf("%s %s %s", aws.ToString(s.Name), s.Failover, aws.ToString(s.ResourceRecords[0].Value)))
		}
	}
	want := []string{"a.del.internal. PRIMARY 10.0.0.2", "b.del.internal. PRIMARY 10.0.1.1", "b.del.internal. SECONDARY 10.0.1.2"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("the zone's A sets after deleting a's pair:\n got %q\nwant %q", got, want)
	}
}

// TestListOrderAsRoute53: ListResourceRecordSets sorts by the name with its labels reversed
// and the trailing dot kept, as Route 53 documents; '-' sorts below '.', so "managers-b" comes
// before "managers" and a name's subtree ("_lock.managers") follows the name directly. Without
// the dot "managers-b" fell between "managers" and its lock, and a reader that stops when it
// leaves the name's subtree missed the lock.
func TestListOrderAsRoute53(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "ord.internal")
	names := []string{"managers.ord.internal.", "managers-b.ord.internal.", "_lock.managers.ord.internal.",
		"managersz.ord.internal.", "a.managers-b.ord.internal.", "m.ord.internal."}
	var changes []r53types.Change
	for i, n := range names {
		s := aSet(n, fmt.Sprintf("10.0.0.%d", i+1))
		changes = append(changes, r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &s})
	}
	if _, err := e.R53.ChangeResourceRecordSets(t.Context(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
		ChangeBatch: &r53types.ChangeBatch{Changes: changes}}); err != nil {
		t.Fatal(err)
	}
	list := func(start string) []string {
		t.Helper()
		in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone)}
		if start != "" {
			in.StartRecordName, in.StartRecordType = aws.String(start), r53types.RRTypeA
		}
		out, err := e.R53.ListResourceRecordSets(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range out.ResourceRecordSets {
			if s.Type == r53types.RRTypeA {
				got = append(got, aws.ToString(s.Name))
			}
		}
		return got
	}
	want := []string{"m.ord.internal.", "managers-b.ord.internal.", "a.managers-b.ord.internal.",
		"managers.ord.internal.", "_lock.managers.ord.internal.", "managersz.ord.internal."}
	if got := list(""); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("whole zone:\n got %q\nwant %q", got, want)
	}
	if got := list("managers.ord.internal"); strings.Join(got, " ") != strings.Join(want[3:], " ") {
		t.Errorf("from managers:\n got %q\nwant %q", got, want[3:])
	}
}

// TestSetIdentifierRules: a set with a routing policy but no SetIdentifier, or a SetIdentifier
// but no routing policy, is refused as InvalidInput with Route 53's message (not as
// InvalidChangeBatch), and nothing of the batch is written.
func TestSetIdentifierRules(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "sid.internal")
	failover := aSet("f.sid.internal.", "10.0.0.1")
	failover.Failover = r53types.ResourceRecordSetFailoverPrimary
	multi := aSet("m.sid.internal", "10.0.0.2")
	multi.MultiValueAnswer = aws.Bool(true)
	plain := aSet("p.sid.internal.", "10.0.0.3")
	plain.SetIdentifier = aws.String("i-1")
	good := aSet("ok.sid.internal.", "10.0.0.4")
	for _, c := range []struct {
		set  r53types.ResourceRecordSet
		want string
	}{
		{failover, "Invalid request: Missing field 'SetIdentifier' in Change with [Action=CREATE, Name=f.sid.internal., Type=A, SetIdentifier=null]"},
		{multi, "Invalid request: Missing field 'SetIdentifier' in Change with [Action=CREATE, Name=m.sid.internal, Type=A, SetIdentifier=null]"},
		{plain, "Invalid request: Expected exactly one of [Weight, Region, Failover, GeoLocation, or MultiValueAnswer], but found none in Change with [Action=CREATE, Name=p.sid.internal., Type=A, SetIdentifier=i-1]"},
	} {
		_, err := e.R53.ChangeResourceRecordSets(t.Context(), &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
			ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{
				{Action: r53types.ChangeActionCreate, ResourceRecordSet: &good},
				{Action: r53types.ChangeActionCreate, ResourceRecordSet: &c.set}}}})
		var in *r53types.InvalidInput
		if !errors.As(err, &in) || in.ErrorMessage() != c.want {
			t.Errorf("%s: %v (%T), want InvalidInput %q", aws.ToString(c.set.Name), err, err, c.want)
		}
	}
	out, err := e.R53.ListResourceRecordSets(t.Context(), &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.ResourceRecordSets {
		if s.Type == r53types.RRTypeA {
			t.Errorf("a refused batch wrote %s", aws.ToString(s.Name))
		}
	}
}

// TestRoutingPolicyPerNameAndType: Route 53 judges routing policy per name and type ("You
// can't create non-failover resource record sets that have the same values for the Name and
// Type elements as failover resource record sets", API reference, ResourceRecordSet): a simple
// TXT set beside failover or multivalue A sets of one name is accepted (the managers' owner
// record), a simple A set beside them is not, and a second CREATE of the TXT set is refused
// (the first writer wins).
func TestRoutingPolicyPerNameAndType(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "rp.internal")
	ctx := t.Context()
	routed := func(name, value, id string, failover r53types.ResourceRecordSetFailover) r53types.Change {
		s := aSet(name, value)
		s.SetIdentifier = aws.String(id)
		if failover != "" {
			s.Failover = failover
		} else {
			s.MultiValueAnswer = aws.Bool(true)
		}
		return r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &s}
	}
	txt := func(name, value string) r53types.Change {
		return r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{Name: aws.String(name),
			Type: r53types.RRTypeTxt, TTL: aws.Int64(60), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String(value)}}}}
	}
	simpleA := func(name string) r53types.Change {
		s := aSet(name, "10.0.0.9")
		return r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &s}
	}
	steps := []struct {
		name    string
		changes []r53types.Change
		refused bool
	}{
		{"failover A sets", []r53types.Change{routed("f.rp.internal", "10.0.0.1", "primary", r53types.ResourceRecordSetFailoverPrimary),
			routed("f.rp.internal", "10.0.0.2", "secondary", r53types.ResourceRecordSetFailoverSecondary)}, false},
		{"a simple TXT beside them", []r53types.Change{txt("f.rp.internal", `"swarm-agent cluster=a"`)}, false},
		{"a second CREATE of that TXT", []r53types.Change{txt("f.rp.internal", `"swarm-agent cluster=b"`)}, true},
		{"a simple A beside the failover A sets", []r53types.Change{simpleA("f.rp.internal")}, true},
		{"a simple TXT created with multivalue A sets", []r53types.Change{txt("m.rp.internal", `"swarm-agent cluster=a"`),
			routed("m.rp.internal", "10.0.0.3", "i-1", ""), routed("m.rp.internal", "10.0.0.4", "i-2", "")}, false},
		{"a simple A beside the multivalue A sets", []r53types.Change{simpleA("m.rp.internal")}, true},
	}
	for _, s := range steps {
		_, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
			ChangeBatch: &r53types.ChangeBatch{Changes: s.changes}})
		var icb *r53types.InvalidChangeBatch
		switch {
		case !s.refused && err != nil:
			t.Errorf("%s: %v, want it accepted", s.name, err)
		case s.refused && !errors.As(err, &icb):
			t.Errorf("%s: %v, want *types.InvalidChangeBatch", s.name, err)
		}
	}
}
