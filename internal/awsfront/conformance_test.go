package awsfront_test

import (
	"context"
	_ "embed"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

//go:embed testdata/conformance.py
var conformancePy []byte

// confCase is one call every client makes. Params and the expectations may name the client's
// variables as {{name}}; Save stores a value of the output (dotted path) in a variable.
type confCase struct {
	Name      string            `json:"name"`
	Service   string            `json:"service"` // as boto3 and the CLI name it
	Operation string            `json:"operation"`
	Params    map[string]any    `json:"params"`
	Save      map[string]string `json:"save,omitempty"`

	code  string            // error code every client must read; "" for success
	msg   string            // the exact error message, when set
	check map[string]string // on success: dotted path -> value ("*": present, not empty)
}

// confResult is what one client read for one case.
type confResult struct {
	Case    string         `json:"case"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Out     map[string]any `json:"out"`
	RC      *int           `json:"rc"` // awscli exit status
	icb     bool           // Go only: the error is *types.InvalidChangeBatch
}

type confClient struct {
	Name string            `json:"name"`
	Kind string            `json:"kind"` // go, boto3, awscli
	Vars map[string]string `json:"vars"`
}

// TestIndependentClients runs every AWS operation the agent uses (and the refusals it must
// recognise) through three clients against moto and the front: aws-sdk-go-v2 (the agent's),
// boto3 and the AWS CLI, and asserts that all three read the same outcome: the same error
// code, the same message, the same output fields. A front answer that only the Go SDK can
// read (Route 53's old <InvalidChangeBatch><Messages> form, which botocore reads with an empty
// code) fails here. IMDSv2 is read with python's urllib and curl.
func TestIndependentClients(t *testing.T) {
	t.Parallel()
	py, pyCLI := pythonWithBoto3(t)
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		t.Skipf("the AWS CLI is not installed (apt-get install awscli); CI has it: %v", err)
	}
	e := fronttest.Start(t, map[string]awsfront.Limit{"route53": {}, "ssm": {}})
	ctx := t.Context()
	start := time.Now()
	env := cliEnv(t)

	w := newConfWorld(t, e)
	imdsURL := e.Front.IMDSURL()
	clients := []confClient{{Name: "go", Kind: "go"}, {Name: "boto3", Kind: "boto3"}, {Name: "awscli", Kind: "awscli"}}
	for i := range clients {
		clients[i].Vars = map[string]string{"me": clients[i].Name, "instance": w.instances[i], "idle": w.instances[3],
			"zone": w.zone, "change": w.change, "queue": w.queue}
	}
	cases := conformanceCases()

	// All clients run at once (each on its own names, instances and messages; a refusal
	// changes nothing): the Go SDK, boto3, the CLI in process (by python3 when it imports the
	// CLI on PATH, else by the interpreter the `aws` script names, else, slowly, one `aws`
	// process per case), the `aws` executable itself on the refusal of issue 14, and curl.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var goResults, exeResults []confResult
	var goTook time.Duration
	wg.Go(func() {
		began := time.Now()
		goResults = runGo(ctx, e, w.sqs, clients[0], cases)
		goTook = time.Since(began)
	})
	var exeVersion string
	wg.Go(func() {
		exeVersion, exeResults = runAWSExecutable(ctx, awsBin, env, e.Front.APIURL(), clients[2], cases, "r53 create existing set")
	})
	var curlGot string
	if curl, err := exec.LookPath("curl"); err == nil {
		wg.Go(func() { curlGot = curlIMDS(ctx, curl, env, imdsURL) })
	}
	spec := func(c confClient) map[string]any {
		return map[string]any{"endpoint": e.Front.APIURL(), "region": "us-east-1", "cases": cases, "clients": []confClient{c}}
	}
	cliPy := py
	if !pyCLI {
		cliPy = python(awsInterpreter(ctx, awsBin))
	}
	var cliDoc *pyDoc
	var cliErr error
	if cliPy != "" {
		wg.Go(func() { cliDoc, cliErr = cliPy.run(ctx, env, spec(clients[2])) })
	}
	setup := time.Since(start)
	botoSpec := spec(clients[1])
	botoSpec["imds"] = imdsURL
	doc, err := py.run(ctx, env, botoSpec)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	results := doc.Results
	results["go"] = goResults
	if cliDoc != nil {
		results["awscli"], doc.AWSCLIVersion, doc.Seconds["awscli"] = cliDoc.Results["awscli"], cliDoc.AWSCLIVersion, cliDoc.Seconds["awscli"]
	}
	t.Logf("setup %s; clients: go %s, python %v s", setup.Round(time.Millisecond), goTook.Round(time.Millisecond), doc.Seconds)
	if cliPy == "" {
		t.Logf("no python imports the CLI on PATH: running %s once per case", awsBin)
		_, results["awscli"] = runAWSExecutable(ctx, awsBin, env, e.Front.APIURL(), clients[2], cases)
	} else if !strings.Contains(exeVersion, "aws-cli/"+doc.AWSCLIVersion+" ") {
		t.Errorf("`aws --version` = %q but %s imports awscli %s: the in-process CLI is not the one on PATH", exeVersion, cliPy, doc.AWSCLIVersion)
	}
	t.Logf("%s; boto3 %s (botocore %s); awscli run in process by %s", strings.TrimSpace(exeVersion), doc.Boto3Version, doc.BotocoreVersion, cliPy)

	for _, c := range clients {
		got := results[c.Name]
		if len(got) != len(cases) {
			t.Fatalf("%s ran %d cases, want %d: %+v", c.Name, len(got), len(cases), got)
		}
		for i, cs := range cases {
			judge(t, c, cs, got[i])
		}
	}
	for i, cs := range cases {
		read := func(name string) string {
			if r := results[name][i]; r.Code != "" {
				return r.Code
			}
			return "ok"
		}
		t.Logf("%-40s go %-24s boto3 %-24s awscli %s", cs.Name, read("go"), read("boto3"), read("awscli"))
	}
	// The `aws` executable reads what the in-process CLI read.
	for _, r := range exeResults {
		for i, cs := range cases {
			if cs.Name == r.Case {
				judge(t, confClient{Name: "aws executable", Kind: "awscli", Vars: clients[2].Vars}, cs, r)
				if want := results["awscli"][i]; r.Code != want.Code || r.Message != want.Message {
					t.Errorf("%s: the aws executable read %s %q, the in-process CLI %s %q", cs.Name, r.Code, r.Message, want.Code, want.Message)
				}
			}
		}
	}
	if tokenLen, _ := doc.IMDS["token_len"].(float64); doc.IMDS["instance_id"] != "i-0conformance0000" || tokenLen <= 0 || doc.IMDS["without_token"] != float64(401) {
		t.Errorf("IMDSv2 through python urllib = %v; want the instance id with a token and 401 without", doc.IMDS)
	}
	wantScheduled := []any{map[string]any{"NotBefore": "4 Mar 2027 09:00:43 GMT", "Code": "system-reboot", "Description": "scheduled reboot",
		"EventId": confEvent.ID, "NotAfter": "4 Mar 2027 09:17:23 GMT", "State": "active"}}
	if got := doc.IMDS["scheduled"]; fmt.Sprint(got) != fmt.Sprint(wantScheduled) {
		t.Errorf("events/maintenance/scheduled through python urllib = %v; want %v", got, wantScheduled)
	}
	if curlGot != "" && curlGot != "i-0conformance0000 401" {
		t.Errorf("IMDSv2 through curl = %q; want the instance id with a token and 401 without", curlGot)
	}
	t.Logf("%d cases x %d clients in %s", len(cases), len(clients), time.Since(start).Round(time.Millisecond))
}

// confWorld is what every client meets: a zone with one set of each routing kind, a group
// whose terminating hook holds one instance per client (and a fourth, idle), a notice queue
// with one message per client, and an instance whose metadata answers 127.0.0.1.
type confWorld struct {
	zone, change, queue string
	instances           []string
	sqs                 *sqs.Client
}

func newConfWorld(t *testing.T, e *fronttest.Env) confWorld {
	t.Helper()
	ctx := t.Context()
	zone := e.Zone(t, "conf.internal")
	sets := []r53types.ResourceRecordSet{
		aSet("a.conf.internal.", "10.0.0.1"),
		withFailover(aSet("f.conf.internal.", "10.0.1.1"), "p1", r53types.ResourceRecordSetFailoverPrimary),
		withFailover(aSet("f.conf.internal.", "10.0.1.2"), "s1", r53types.ResourceRecordSetFailoverSecondary),
		{Name: aws.String("m.conf.internal."), Type: r53types.RRTypeA, TTL: aws.Int64(10), SetIdentifier: aws.String("m1"),
			MultiValueAnswer: aws.Bool(true), ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("10.0.2.1")}}},
		{Name: aws.String("c.conf.internal."), Type: r53types.RRTypeCname, TTL: aws.Int64(10),
			ResourceRecords: []r53types.ResourceRecord{{Value: aws.String("target.example.com")}}},
	}
	var changes []r53types.Change
	for i := range sets {
		changes = append(changes, r53types.Change{Action: r53types.ChangeActionCreate, ResourceRecordSet: &sets[i]})
	}
	chg, err := e.R53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zone),
		ChangeBatch: &r53types.ChangeBatch{Changes: changes}})
	if err != nil {
		t.Fatalf("create the zone's sets: %v", err)
	}
	ids := confGroup(t, e, "conf", 4)
	for _, id := range ids[:3] {
		if err := e.Front.StartScaleIn(ctx, id); err != nil {
			t.Fatalf("scale-in %s: %v", id, err)
		}
	}
	sq := sqs.NewFromConfig(e.AWS, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.Front.APIURL()) })
	q, err := sq.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("conf-notices")})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	for i := range 3 {
		if _, err := sq.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(fmt.Sprint("notice ", i))}); err != nil {
			t.Fatalf("send notice: %v", err)
		}
	}
	e.Front.AddInstance(imdsfake.Instance{ID: "i-0conformance0000", PrivateIP: "127.0.0.1", AZ: "us-east-1a", InstanceType: "t3.micro"})
	// The idle instance has a scheduled reboot and failing status checks; the instance whose
	// metadata answers 127.0.0.1 has the same reboot in its metadata.
	e.Front.AddInstance(imdsfake.Instance{ID: ids[3], PrivateIP: "127.0.0.99", AZ: "us-east-1a", InstanceType: "t3.micro"})
	for _, id := range []string{ids[3], "i-0conformance0000"} {
		if _, err := e.Front.ScheduleEvent(id, confEvent); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Front.SetStatusChecks(ids[3], awsfront.StatusChecks{System: "ok", Instance: "impaired",
		Since: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	return confWorld{zone: zone, change: aws.ToString(chg.ChangeInfo.Id), queue: aws.ToString(q.QueueUrl), instances: ids, sqs: sq}
}

// confEvent is the scheduled event the conformance world's instances carry.
var confEvent = imdsfake.Event{ID: "instance-event-0d59937288b749b32", Code: "system-reboot", Description: "scheduled reboot",
	NotBefore: time.Date(2027, 3, 4, 9, 0, 43, 0, time.UTC), NotAfter: time.Date(2027, 3, 4, 9, 17, 23, 0, time.UTC),
	NotBeforeDeadline: time.Date(2027, 3, 20, 0, 0, 0, 0, time.UTC)}

// judge compares one client's result with the case's expectation.
func judge(t *testing.T, c confClient, cs confCase, r confResult) {
	t.Helper()
	subst := func(s string) string {
		for k, v := range c.Vars {
			s = strings.ReplaceAll(s, "{{"+k+"}}", v)
		}
		return s
	}
	if r.Case != cs.Name {
		t.Errorf("%s: result for case %q, want %q", c.Name, r.Case, cs.Name)
		return
	}
	if cs.code == "" {
		if r.Code != "" || (r.RC != nil && *r.RC != 0) {
			t.Errorf("%s / %s: error %s %q, want success", cs.Name, c.Name, r.Code, r.Message)
			return
		}
		for path, want := range cs.check {
			got, ok := dig(r.Out, path)
			switch {
			case !ok:
				t.Errorf("%s / %s: no %s in the output %v", cs.Name, c.Name, path, r.Out)
			case want == "*" && (got == "" || got == "<nil>"):
				t.Errorf("%s / %s: %s is empty", cs.Name, c.Name, path)
			case want != "*" && got != subst(want):
				t.Errorf("%s / %s: %s = %q, want %q", cs.Name, c.Name, path, got, subst(want))
			}
		}
		return
	}
	if r.Code != cs.code {
		t.Errorf("%s / %s: error code %q (message %q), want %q as the Go SDK reads it", cs.Name, c.Name, r.Code, r.Message, cs.code)
	}
	if r.RC != nil && *r.RC == 0 {
		t.Errorf("%s / %s: the CLI exited 0 on an error", cs.Name, c.Name)
	}
	if cs.msg != "" && r.Message != subst(cs.msg) {
		t.Errorf("%s / %s: message\n  %q\nwant\n  %q", cs.Name, c.Name, r.Message, subst(cs.msg))
	}
	if c.Kind == "go" && cs.code == "InvalidChangeBatch" && !r.icb {
		t.Errorf("%s / go: the SDK did not return *types.InvalidChangeBatch", cs.Name)
	}
}

// conformanceCases are the calls of the agent (and GetChange, GetParameter, which people use
// to look at what it did), each refusal the agent must recognise, and the Route 53 refusals
// the front adds to moto, with the messages AWS gives for them.
func conformanceCases() []confCase {
	a := func(name, value string) map[string]any {
		return map[string]any{"Name": name, "Type": "A", "TTL": 10, "ResourceRecords": []any{map[string]any{"Value": value}}}
	}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	batch := func(changes ...any) map[string]any {
		return map[string]any{"HostedZoneId": "{{zone}}", "ChangeBatch": map[string]any{"Changes": changes}}
	}
	change := func(action string, set map[string]any) any {
		return map[string]any{"Action": action, "ResourceRecordSet": set}
	}
	// Route 53 answers a refused batch as an ErrorResponse with code InvalidChangeBatch and
	// every reason in one message, in brackets, joined by ", ". It once answered
	// <InvalidChangeBatch><Messages>, which botocore reads with an empty code; AWS's SDK
	// maintainers removed their handling of that form in 2024 because Route 53 no longer sends
	// it (aws/aws-sdk-kotlin#1433, #1435, quoting "[Tried to delete resource record set
	// [name='foo.', type='CNAME'] but it was not found]" and a two-reason message). The other
	// messages are quoted from answers people posted: the CNAME ones from
	// ansible-collections/amazon.aws#2694 (2025) and RJPearson94/terraform-aws-open-next#24
	// (2024), "cannot be created as other RRSets exist" from gympass/cdn-origin-controller#102
	// (2023), "non multivalue answer rrset" from cert-manager/cert-manager#5388 (2022), "not
	// permitted in zone" from kcp-dev/kcp-glbc#475 (2022; moto words it so, without brackets). The
	// "non failover rrset" and second-PRIMARY messages follow those and AWS's latency message
	// (hashicorp/terraform-provider-aws#1668); their exact wording is not on record.
	refused := func(name string, msgs []string, changes ...any) confCase {
		return confCase{Name: "r53 " + name, Service: "route53", Operation: "ChangeResourceRecordSets", Params: batch(changes...),
			code: "InvalidChangeBatch", msg: "[" + strings.Join(msgs, ", ") + "]"}
	}
	const (
		existsA    = "Tried to create resource record set [name='a.conf.internal.', type='A'] but it already exists"
		mismatchA  = "Tried to delete resource record set [name='a.conf.internal.', type='A'] but the values provided do not match the current values"
		notFoundA  = "Tried to delete resource record set [name='nope.conf.internal.', type='A'] but it was not found"
		asgGroup   = "conf"
		hook       = "drain"
		noActionOn = "No active Lifecycle Action found with instance ID "
	)
	hb := func(id string) map[string]any {
		return map[string]any{"AutoScalingGroupName": asgGroup, "LifecycleHookName": hook, "InstanceId": id}
	}
	complete := func(id string) map[string]any {
		return with(hb(id), "LifecycleActionResult", "CONTINUE")
	}
	return []confCase{
		// Route 53: what discovery/route53 calls.
		{Name: "r53 get hosted zone", Service: "route53", Operation: "GetHostedZone", Params: map[string]any{"Id": "{{zone}}"},
			check: map[string]string{"HostedZone.Name": "conf.internal.", "HostedZone.Config.PrivateZone": "true"}},
		{Name: "r53 list sets", Service: "route53", Operation: "ListResourceRecordSets", Params: map[string]any{"HostedZoneId": "{{zone}}"},
			check: map[string]string{"ResourceRecordSets.0.Name": "conf.internal.", "ResourceRecordSets.2.Name": "a.conf.internal."}},
		{Name: "r53 create own set", Service: "route53", Operation: "ChangeResourceRecordSets",
			Params: batch(change("CREATE", a("{{me}}.conf.internal.", "10.0.9.1"))), Save: map[string]string{"mine": "ChangeInfo.Id"},
			check: map[string]string{"ChangeInfo.Status": "PENDING"}},
		{Name: "r53 get change", Service: "route53", Operation: "GetChange", Params: map[string]any{"Id": "{{change}}"},
			check: map[string]string{"ChangeInfo.Id": "{{change}}", "ChangeInfo.Status": "*"}},
		{Name: "r53 get own change", Service: "route53", Operation: "GetChange", Params: map[string]any{"Id": "{{mine}}"},
			check: map[string]string{"ChangeInfo.Status": "*"}},
		{Name: "r53 swap own set", Service: "route53", Operation: "ChangeResourceRecordSets",
			Params: batch(change("DELETE", a("{{me}}.conf.internal.", "10.0.9.1")), change("CREATE", a("{{me}}.conf.internal.", "10.0.9.2"))),
			check:  map[string]string{"ChangeInfo.Id": "*"}},
		// Route 53 refusals: each is InvalidChangeBatch for every client, messages in brackets.
		refused("create existing set", []string{existsA}, change("CREATE", a("a.conf.internal.", "10.0.0.1"))),
		refused("delete missing set", []string{notFoundA}, change("DELETE", a("nope.conf.internal.", "10.0.0.1"))),
		refused("delete different set", []string{mismatchA}, change("DELETE", a("a.conf.internal.", "10.0.0.9"))),
		refused("two reasons", []string{mismatchA, existsA},
			change("DELETE", a("a.conf.internal.", "10.0.0.9")), change("CREATE", a("a.conf.internal.", "10.0.0.1"))),
		refused("second primary", []string{"RRSet with DNS name f.conf.internal., type A, SetIdentifier p2, and Failover Type=PRIMARY cannot be created because a failover RRSet with the same name, type and failover type already exists."},
			change("CREATE", with(a("f.conf.internal.", "10.0.1.3"), "SetIdentifier", "p2", "Failover", "PRIMARY"))),
		refused("plain set beside failover sets", []string{"RRSet with DNS name f.conf.internal., type A cannot be created as other RRSets exist with the same name and type."},
			change("CREATE", a("f.conf.internal.", "10.0.1.4"))),
		refused("multivalue set beside a plain set", []string{"RRSet with DNS name a.conf.internal., type A, SetIdentifier x1 cannot be created because a non multivalue answer rrset exists with the same name and type."},
			change("CREATE", with(a("a.conf.internal.", "10.0.0.2"), "SetIdentifier", "x1", "MultiValueAnswer", true))),
		refused("failover set beside multivalue sets", []string{"RRSet with DNS name m.conf.internal., type A, SetIdentifier x2 cannot be created because a non failover rrset exists with the same name and type."},
			change("CREATE", with(a("m.conf.internal.", "10.0.2.2"), "SetIdentifier", "x2", "Failover", "SECONDARY"))),
		refused("CNAME beside an A set", []string{"RRSet of type CNAME with DNS name a.conf.internal. is not permitted as it conflicts with other records with the same DNS name in zone conf.internal."},
			change("CREATE", map[string]any{"Name": "a.conf.internal.", "Type": "CNAME", "TTL": 10, "ResourceRecords": []any{map[string]any{"Value": "target.example.com"}}})),
		refused("TXT beside a CNAME", []string{"RRSet of type TXT with DNS name c.conf.internal. is not permitted because a conflicting RRSet of type CNAME with the same DNS name already exists in zone conf.internal."},
			change("CREATE", map[string]any{"Name": "c.conf.internal.", "Type": "TXT", "TTL": 10, "ResourceRecords": []any{map[string]any{"Value": `"owner=i-1"`}}})),
		refused("set outside the zone", []string{"RRSet with DNS name x.other.internal. is not permitted in zone conf.internal."},
			change("CREATE", a("x.other.internal.", "10.0.0.1"))),
		{Name: "r53 get missing zone", Service: "route53", Operation: "GetHostedZone", Params: map[string]any{"Id": "ZNOSUCHZONE"}, code: "NoSuchHostedZone"},

		// SSM: what discovery/ssmtokens calls.
		{Name: "ssm put parameter", Service: "ssm", Operation: "PutParameter",
			Params: map[string]any{"Name": "/conf/{{me}}/token", "Value": "s3cret-{{me}}", "Type": "SecureString"}, check: map[string]string{"Version": "1"}},
		{Name: "ssm put existing parameter", Service: "ssm", Operation: "PutParameter",
			Params: map[string]any{"Name": "/conf/{{me}}/token", "Value": "other", "Type": "SecureString"}, code: "ParameterAlreadyExists"},
		{Name: "ssm get parameters", Service: "ssm", Operation: "GetParameters",
			Params: map[string]any{"Names": []string{"/conf/{{me}}/token", "/conf/missing"}, "WithDecryption": true},
			check:  map[string]string{"Parameters.0.Value": "s3cret-{{me}}", "Parameters.0.Type": "SecureString", "InvalidParameters.0": "/conf/missing"}},
		{Name: "ssm get parameter", Service: "ssm", Operation: "GetParameter", Params: map[string]any{"Name": "/conf/{{me}}/token", "WithDecryption": true},
			check: map[string]string{"Parameter.Value": "s3cret-{{me}}"}},
		{Name: "ssm get missing parameter", Service: "ssm", Operation: "GetParameter", Params: map[string]any{"Name": "/conf/missing"}, code: "ParameterNotFound"},

		// Auto Scaling: what lifecycle/asg calls; the lifecycle half is the front's own.
		{Name: "asg describe instance", Service: "autoscaling", Operation: "DescribeAutoScalingInstances",
			Params: map[string]any{"InstanceIds": []string{"{{instance}}"}},
			check:  map[string]string{"AutoScalingInstances.0.LifecycleState": "Terminating:Wait", "AutoScalingInstances.0.AutoScalingGroupName": asgGroup}},
		{Name: "asg describe hooks", Service: "autoscaling", Operation: "DescribeLifecycleHooks", Params: map[string]any{"AutoScalingGroupName": asgGroup},
			check: map[string]string{"LifecycleHooks.0.LifecycleHookName": hook, "LifecycleHooks.0.HeartbeatTimeout": "300", "LifecycleHooks.0.DefaultResult": "ABANDON"}},
		{Name: "asg heartbeat without action", Service: "autoscaling", Operation: "RecordLifecycleActionHeartbeat", Params: hb("{{idle}}"),
			code: "ValidationError", msg: noActionOn + "{{idle}}"},
		{Name: "asg complete without action", Service: "autoscaling", Operation: "CompleteLifecycleAction", Params: complete("{{idle}}"),
			code: "ValidationError", msg: noActionOn + "{{idle}}"},
		{Name: "asg heartbeat", Service: "autoscaling", Operation: "RecordLifecycleActionHeartbeat", Params: hb("{{instance}}")},
		{Name: "asg complete", Service: "autoscaling", Operation: "CompleteLifecycleAction", Params: complete("{{instance}}")},
		{Name: "asg complete again", Service: "autoscaling", Operation: "CompleteLifecycleAction", Params: complete("{{instance}}"),
			code: "ValidationError", msg: noActionOn + "{{instance}}"},
		{Name: "asg protect instance", Service: "autoscaling", Operation: "SetInstanceProtection",
			Params: map[string]any{"AutoScalingGroupName": asgGroup, "InstanceIds": []string{"{{idle}}"}, "ProtectedFromScaleIn": true}},

		// EC2: what the leader asks of instances' status checks (the front shows its scheduled
		// events and failing checks over moto's answer).
		{Name: "ec2 describe instance status", Service: "ec2", Operation: "DescribeInstanceStatus",
			Params: map[string]any{"InstanceIds": []string{"{{idle}}"}, "IncludeAllInstances": true},
			check: map[string]string{"InstanceStatuses.0.InstanceId": "{{idle}}", "InstanceStatuses.0.InstanceState.Name": "running",
				"InstanceStatuses.0.SystemStatus.Status": "ok", "InstanceStatuses.0.InstanceStatus.Status": "impaired",
				"InstanceStatuses.0.InstanceStatus.Details.0.Name": "reachability", "InstanceStatuses.0.InstanceStatus.Details.0.Status": "failed",
				"InstanceStatuses.0.InstanceStatus.Details.0.ImpairedSince": "*",
				"InstanceStatuses.0.Events.0.InstanceEventId":               confEvent.ID, "InstanceStatuses.0.Events.0.Code": "system-reboot",
				"InstanceStatuses.0.Events.0.Description": "scheduled reboot", "InstanceStatuses.0.Events.0.NotBefore": "*",
				"InstanceStatuses.0.Events.0.NotAfter": "*", "InstanceStatuses.0.Events.0.NotBeforeDeadline": "*"}},
		{Name: "ec2 describe missing instance status", Service: "ec2", Operation: "DescribeInstanceStatus",
			Params: map[string]any{"InstanceIds": []string{"i-0123456789abcdef0"}}, code: "InvalidInstanceID.NotFound"},

		// SQS: what lifecycle/queue calls on the notice queue (moto's, through the front).
		{Name: "sqs receive", Service: "sqs", Operation: "ReceiveMessage",
			Params: map[string]any{"QueueUrl": "{{queue}}", "MaxNumberOfMessages": 1, "VisibilityTimeout": 60},
			Save:   map[string]string{"handle": "Messages.0.ReceiptHandle"}, check: map[string]string{"Messages.0.Body": "*"}},
		{Name: "sqs change visibility", Service: "sqs", Operation: "ChangeMessageVisibility",
			Params: map[string]any{"QueueUrl": "{{queue}}", "ReceiptHandle": "{{handle}}", "VisibilityTimeout": 120}},
		{Name: "sqs delete", Service: "sqs", Operation: "DeleteMessage", Params: map[string]any{"QueueUrl": "{{queue}}", "ReceiptHandle": "{{handle}}"}},
		{Name: "sqs receive from missing queue", Service: "sqs", Operation: "ReceiveMessage",
			Params: map[string]any{"QueueUrl": "{{queue}}-missing"}, code: "AWS.SimpleQueueService.NonExistentQueue"},
	}
}
