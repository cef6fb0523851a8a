package route53

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsroute53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// TestBatchConflictBothForms: Route 53 answers a refused batch as InvalidChangeBatch in two
// XML forms (an ErrorResponse, and <InvalidChangeBatch><Messages>); through the real SDK,
// against moto and the front, both are recognised as a conflict, and other errors are not.
func TestBatchConflictBothForms(t *testing.T) {
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}})
	zone := e.Zone(t, "swarm.internal")
	ctx := t.Context()
	change := func(c ...types.Change) error {
		_, err := e.R53.ChangeResourceRecordSets(ctx, &awsroute53.ChangeResourceRecordSetsInput{
			HostedZoneId: aws.String(zone), ChangeBatch: &types.ChangeBatch{Changes: c}})
		return err
	}
	set := &types.ResourceRecordSet{Name: aws.String("m.swarm.internal."), Type: types.RRTypeA, TTL: aws.Int64(10),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String("10.0.0.1")}}}
	if err := change(types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: set}); err != nil {
		t.Fatal(err)
	}
	// <InvalidChangeBatch><Messages> form: CREATE of an existing set.
	exists := change(types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: set})
	// ErrorResponse form: a set the zone refuses (a CNAME beside the A set; a failover set
	// without an identifier, used here before, is InvalidInput, not InvalidChangeBatch).
	bad := &types.ResourceRecordSet{Name: aws.String("m.swarm.internal."), Type: types.RRTypeCname, TTL: aws.Int64(10),
		ResourceRecords: []types.ResourceRecord{{Value: aws.String("t.example.com")}}}
	invalid := change(types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: bad})
	for name, err := range map[string]error{"messages form": exists, "error-response form": invalid} {
		var icb *types.InvalidChangeBatch
		if !errors.As(err, &icb) || !isBatchConflict(err) {
			t.Errorf("%s: %v (%T), want *types.InvalidChangeBatch recognised as a conflict", name, err, err)
		}
	}
	e.Front.InjectFault(awsfront.Fault{Service: "route53", Kind: awsfront.Fault5xx, Count: 10})
	if err := change(types.Change{Action: types.ChangeActionUpsert, ResourceRecordSet: set}); err == nil || isBatchConflict(err) {
		t.Errorf("5xx: %v, want an error that is not a batch conflict", err)
	}
}
