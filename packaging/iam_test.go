package packaging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// policyFiles are the IAM policies, by role.
var policyFiles = map[string]string{
	"manager": "iam/manager-policy.json",
	"worker":  "iam/worker-policy.json",
}

// policyVars are the placeholders the policies may use (Terraform's templatefile fills them in;
// README explains each), with the example values these tests render them with.
var policyVars = map[string]string{
	"region":        "eu-west-1",
	"account_id":    "123456789012",
	"cluster":       "prod",
	"zone_id":       "Z0123456789EXAMPLE",
	"kms_key_id":    "1234abcd-12ab-34cd-56ef-1234567890ab",
	"manager_group": "prod-managers",
	"worker_group":  "prod-workers",
	"queue_name":    "prod-swarm-lifecycle",
}

var placeholderRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// renderPolicy substitutes ${name} placeholders the way templatefile does for these files, and
// fails on a name it does not know or on template directives.
func renderPolicy(raw []byte, vars map[string]string) ([]byte, error) {
	if bytes.Contains(raw, []byte("%{")) {
		return nil, errors.New("template directive %{ in a policy: keep the files plain JSON with ${name} placeholders")
	}
	var errs []error
	out := placeholderRE.ReplaceAllFunc(raw, func(m []byte) []byte {
		v, ok := vars[string(m[2:len(m)-1])]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown placeholder %s (known: %s)", m, strings.Join(slices.Sorted(maps.Keys(vars)), ", ")))
		}
		return []byte(v)
	})
	return out, errors.Join(errs...)
}

func readPolicy(t *testing.T, role string) (raw, rendered []byte) {
	t.Helper()
	raw, err := os.ReadFile(policyFiles[role])
	if err != nil {
		t.Fatal(err)
	}
	rendered, err = renderPolicy(raw, policyVars)
	if err != nil {
		t.Fatalf("%s: %v", policyFiles[role], err)
	}
	return raw, rendered
}

// Actions that take no resource-level permissions: the only ones allowed on "*".
var starOnlyActions = map[string]bool{
	"autoscaling:DescribeAutoScalingGroups":    true,
	"autoscaling:DescribeAutoScalingInstances": true,
	"autoscaling:DescribeLifecycleHooks":       true,
	"ec2:DescribeInstances":                    true,
	"ec2:DescribeInstanceStatus":               true,
}

// sdkClients: an IAM action of these services is named after an API operation, which is a
// method of the service's SDK client. kms has no SDK module in go.mod: its actions are listed (GenerateDataKey: what Secrets Manager asks KMS for when it encrypts).
var sdkClients = map[string]reflect.Type{
	"autoscaling":    reflect.TypeFor[*autoscaling.Client](),
	"ec2":            reflect.TypeFor[*ec2.Client](),
	"route53":        reflect.TypeFor[*route53.Client](),
	"secretsmanager": reflect.TypeFor[*secretsmanager.Client](),
	"sqs":            reflect.TypeFor[*sqs.Client](),
	"ssm":            reflect.TypeFor[*ssm.Client](),
}
var kmsActions = map[string]bool{"Encrypt": true, "Decrypt": true, "GenerateDataKey": true}

// realAction reports whether action ("service:Operation") names a real API operation.
func realAction(action string) bool {
	svc, op, ok := strings.Cut(action, ":")
	if !ok {
		return false
	}
	if svc == "kms" {
		return kmsActions[op]
	}
	typ, ok := sdkClients[svc]
	if !ok {
		return false
	}
	_, ok = typ.MethodByName(op)
	return ok
}

// policy is the subset of the IAM policy grammar that the schema check admits.
type policy struct {
	Version   string
	Statement []statement
}

type statement struct {
	Sid       string
	Effect    string
	Action    []string
	Resource  []string
	Condition map[string]map[string][]string
}

var (
	sidRE    = regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`)
	actionRE = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9]+$`)
)

// checkPolicy validates a policy document against a small schema: Version 2012-10-17; each
// Statement has only Sid (unique), Effect Allow, Action (a list of real "service:Operation"
// names, no wildcards), Resource (an ARN or a list of them; "*" only for actions without
// resource-level permissions) and an optional Condition of string operators. Every problem is
// returned.
func checkPolicy(doc []byte) (policy, []string) {
	var p policy
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if err := noDuplicateKeys(doc); err != nil {
		bad("%v", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return p, []string{fmt.Sprintf("not a JSON object: %v", err)}
	}
	for k := range top {
		if k != "Version" && k != "Statement" {
			bad("top-level key %q: only Version and Statement", k)
		}
	}
	if err := json.Unmarshal(top["Version"], &p.Version); err != nil || p.Version != "2012-10-17" {
		bad("Version %s: must be \"2012-10-17\" (the older version has no policy variables)", top["Version"])
	}
	var raws []map[string]json.RawMessage
	if err := json.Unmarshal(top["Statement"], &raws); err != nil || len(raws) == 0 {
		bad("Statement: must be a non-empty list of objects (%v)", err)
	}
	sids := map[string]bool{}
	for i, raw := range raws {
		var s statement
		at := fmt.Sprintf("Statement[%d]", i)
		for k := range raw {
			if !slices.Contains([]string{"Sid", "Effect", "Action", "Resource", "Condition"}, k) {
				bad("%s: key %q not allowed (NotAction, NotResource, Principal have no place here)", at, k)
			}
		}
		if json.Unmarshal(raw["Sid"], &s.Sid) != nil || !sidRE.MatchString(s.Sid) {
			bad("%s: Sid %s: required, letters and digits", at, raw["Sid"])
		} else if sids[s.Sid] {
			bad("%s: Sid %q used twice", at, s.Sid)
		}
		sids[s.Sid] = true
		at = fmt.Sprintf("Statement %q", s.Sid)
		if json.Unmarshal(raw["Effect"], &s.Effect) != nil || s.Effect != "Allow" {
			bad("%s: Effect %s: must be \"Allow\"", at, raw["Effect"])
		}
		if json.Unmarshal(raw["Action"], &s.Action) != nil || len(s.Action) == 0 {
			bad("%s: Action %s: must be a non-empty list of strings", at, raw["Action"])
		}
		for _, a := range s.Action {
			if !actionRE.MatchString(a) || !realAction(a) {
				bad("%s: Action %q: not a real service:Operation name (no wildcards)", at, a)
			}
		}
		var one string
		if json.Unmarshal(raw["Resource"], &one) == nil {
			s.Resource = []string{one}
		} else if json.Unmarshal(raw["Resource"], &s.Resource) != nil || len(s.Resource) == 0 {
			bad("%s: Resource %s: must be an ARN or a non-empty list of ARNs", at, raw["Resource"])
		}
		for _, r := range s.Resource {
			switch {
			case r == "*":
				for _, a := range s.Action {
					if !starOnlyActions[a] {
						bad("%s: Resource \"*\" with %s, which takes resource-level permissions", at, a)
					}
				}
			case !strings.HasPrefix(r, "arn:aws:"):
				bad("%s: Resource %q: must be \"*\" or an arn:aws: ARN", at, r)
			}
		}
		if c, ok := raw["Condition"]; ok {
			var cond map[string]map[string]json.RawMessage
			if err := json.Unmarshal(c, &cond); err != nil || len(cond) == 0 {
				bad("%s: Condition: must be {operator: {key: value(s)}}", at)
			}
			s.Condition = map[string]map[string][]string{}
			for op, kv := range cond {
				if op != "StringEquals" && op != "StringLike" {
					bad("%s: Condition operator %q: only StringEquals and StringLike are used here", at, op)
				}
				s.Condition[op] = map[string][]string{}
				for k, v := range kv {
					var vals []string
					if json.Unmarshal(v, &one) == nil {
						vals = []string{one}
					} else if json.Unmarshal(v, &vals) != nil || len(vals) == 0 {
						bad("%s: Condition %s %s: must be a string or a list of strings", at, op, k)
					}
					s.Condition[op][k] = vals
				}
			}
		}
		p.Statement = append(p.Statement, s)
	}
	return p, probs
}

// noDuplicateKeys fails on an object with a key given twice, which encoding/json would
// silently resolve to the last one (and IAM rejects).
func noDuplicateKeys(doc []byte) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // next string token is a key
	}
	var stack []*frame
	valueEnded := func() { // in an object, a key comes next
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].expect = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueEnded()
			continue
		}
		if top := stack[len(stack)-1]; top.object && top.expect {
			k := tok.(string) // the decoder only gives a string in a key's place
			if top.keys[k] {
				return fmt.Errorf("key %q given twice in one object", k)
			}
			top.keys[k] = true
			top.expect = false
			continue
		}
		valueEnded()
	}
}

// globMatch matches IAM-style: '*' any run of characters ('/' and ':' included), '?' one.
// path.Match would stop '*' at '/', and so miss what IAM grants.
func globMatch(pattern, s string, fold bool) bool {
	re := regexp.QuoteMeta(pattern)
	re = strings.NewReplacer(`\*`, `.*`, `\?`, `.`).Replace(re)
	if fold {
		re = "(?i)" + re
	}
	return regexp.MustCompile("^" + re + "$").MatchString(s)
}

// allows reports whether p grants action on resource in the request context ctx (condition
// keys); a condition key missing from ctx fails, as in IAM for these operators.
func (p policy) allows(action, resource string, ctx map[string]string) bool {
	for _, s := range p.Statement {
		if s.Effect != "Allow" ||
			!slices.ContainsFunc(s.Action, func(a string) bool { return globMatch(a, action, true) }) ||
			!slices.ContainsFunc(s.Resource, func(r string) bool { return globMatch(r, resource, false) }) {
			continue
		}
		ok := true
		for op, kv := range s.Condition {
			for k, vals := range kv {
				v, present := ctx[k]
				ok = ok && present && slices.ContainsFunc(vals, func(want string) bool {
					return want == v || (op == "StringLike" && globMatch(want, v, false))
				})
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// grants reports whether any statement lists action at all, whatever the resource.
func (p policy) grants(action string) bool {
	for _, s := range p.Statement {
		if slices.ContainsFunc(s.Action, func(a string) bool { return globMatch(a, action, true) }) {
			return true
		}
	}
	return false
}

func TestIAMPolicySchema(t *testing.T) {
	for _, role := range slices.Sorted(maps.Keys(policyFiles)) {
		t.Run(role, func(t *testing.T) {
			raw, rendered := readPolicy(t, role)
			// The file is JSON as it stands (placeholders sit inside strings) and after rendering.
			for name, doc := range map[string][]byte{"as written": raw, "rendered": rendered} {
				if _, probs := checkPolicy(doc); len(probs) > 0 {
					t.Errorf("%s %s:\n  %s", policyFiles[role], name, strings.Join(probs, "\n  "))
				}
			}
			used := map[string]bool{}
			for _, m := range placeholderRE.FindAllSubmatch(raw, -1) {
				used[string(m[1])] = true
			}
			t.Logf("%s uses %s", policyFiles[role], strings.Join(slices.Sorted(maps.Keys(used)), ", "))
		})
	}
}

// TestIAMPolicySchemaCatches: the checker rejects what it is there to reject.
func TestIAMPolicySchemaCatches(t *testing.T) {
	const stmt = `{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"arn:aws:ssm:r:1:parameter/x"}`
	tests := map[string]string{
		"old version":      `{"Version":"2008-10-17","Statement":[` + stmt + `]}`,
		"deny":             `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Deny","Action":["ssm:GetParameters"],"Resource":"*"}]}`,
		"wildcard action":  `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:*"],"Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
		"made-up action":   `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameterz"],"Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
		"string action":    `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"ssm:GetParameters","Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
		"star resource":    `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"*"}]}`,
		"no sid":           `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
		"duplicate sid":    `{"Version":"2012-10-17","Statement":[` + stmt + `,` + stmt + `]}`,
		"duplicate key":    `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"arn:aws:ssm:r:1:parameter/x","Resource":"*"}]}`,
		"not action":       `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","NotAction":["ssm:GetParameters"],"Resource":"*"}]}`,
		"other operator":   `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"arn:aws:ssm:r:1:parameter/x","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}`,
		"no statement":     `{"Version":"2012-10-17","Statement":[]}`,
		"extra top-level":  `{"Version":"2012-10-17","Id":"x","Statement":[` + stmt + `]}`,
		"not an arn":       `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"parameter/x"}]}`,
		"unknown service":  `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/k"}]}`,
		"malformed json":   `{"Version":"2012-10-17","Statement":[` + stmt,
		"kms action typo":  `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":["kms:Decrypts"],"Resource":"arn:aws:kms:r:1:key/k"}]}`,
		"empty action":     `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":[],"Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
		"sid with a space": `{"Version":"2012-10-17","Statement":[{"Sid":"A B","Effect":"Allow","Action":["ssm:GetParameters"],"Resource":"arn:aws:ssm:r:1:parameter/x"}]}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, probs := checkPolicy([]byte(doc)); len(probs) == 0 {
				t.Errorf("checkPolicy accepted %s", doc)
			}
		})
	}
	if _, probs := checkPolicy([]byte(`{"Version":"2012-10-17","Statement":[` + stmt + `]}`)); len(probs) > 0 {
		t.Errorf("checkPolicy rejected a valid policy: %v", probs)
	}
}

func TestIAMPolicyExactActions(t *testing.T) {
	want := map[string][]string{
		"manager": {
			"autoscaling:CompleteLifecycleAction", "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
			"autoscaling:DescribeLifecycleHooks", "autoscaling:RecordLifecycleActionHeartbeat",
			"autoscaling:SetInstanceProtection", "ec2:DescribeInstanceStatus", "ec2:DescribeInstances", "kms:Decrypt", "kms:Encrypt",
			"kms:GenerateDataKey",
			"route53:ChangeResourceRecordSets", "route53:GetChange",
			"route53:ListResourceRecordSets",
			"secretsmanager:CreateSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
			"secretsmanager:RestoreSecret",
			"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
			"ssm:GetParameters", "ssm:PutParameter",
		},
		"worker": {
			"autoscaling:CompleteLifecycleAction", "autoscaling:DescribeAutoScalingInstances",
			"autoscaling:DescribeLifecycleHooks", "autoscaling:RecordLifecycleActionHeartbeat",
			"kms:Decrypt", "route53:ListResourceRecordSets", "secretsmanager:GetSecretValue", "ssm:GetParameters",
		},
	}
	for role, want := range want {
		t.Run(role, func(t *testing.T) {
			_, rendered := readPolicy(t, role)
			p, _ := checkPolicy(rendered)
			got := map[string]bool{}
			for _, s := range p.Statement {
				for _, a := range s.Action {
					got[a] = true
				}
			}
			if g := slices.Sorted(maps.Keys(got)); !slices.Equal(g, want) {
				t.Errorf("%s grants\n  %v\nwant exactly\n  %v\n(a new permission must be added here on purpose)", policyFiles[role], g, want)
			}
		})
	}
}

// TestIAMPolicyGrants evaluates the rendered policies like IAM does (wildcards across '/' and
// ':', conditions against the request context) for what each role must and must not be able to do.
func TestIAMPolicyGrants(t *testing.T) {
	v := policyVars
	param := func(cluster, leaf string) string {
		return "arn:aws:ssm:" + v["region"] + ":" + v["account_id"] + ":parameter/swarm-agent/" + cluster + "/" + leaf
	}
	zone := "arn:aws:route53:::hostedzone/" + v["zone_id"]
	group := func(name string) string {
		return "arn:aws:autoscaling:" + v["region"] + ":" + v["account_id"] +
			":autoScalingGroup:9c0e1f2a-1111-2222-3333-444455556666:autoScalingGroupName/" + name
	}
	key := "arn:aws:kms:" + v["region"] + ":" + v["account_id"] + ":key/" + v["kms_key_id"]
	queue := "arn:aws:sqs:" + v["region"] + ":" + v["account_id"] + ":" + v["queue_name"]
	viaSSM := func(paramARN string) map[string]string {
		return map[string]string{"kms:ViaService": "ssm." + v["region"] + ".amazonaws.com",
			"kms:EncryptionContext:PARAMETER_ARN": paramARN}
	}
	direct := map[string]string{"kms:EncryptionContext:PARAMETER_ARN": param("prod", "join-token/worker")}
	// Secrets Manager appends a random 6-character suffix to a secret's ARN.
	secret := func(cluster, role string) string {
		return "arn:aws:secretsmanager:" + v["region"] + ":" + v["account_id"] + ":secret:swarm-agent/" + cluster + "/join-token/" + role + "-a1B2c3"
	}
	// The autolock unlock key (--autolock) sits beside the tokens: managers only.
	unlockSecret := "arn:aws:secretsmanager:" + v["region"] + ":" + v["account_id"] + ":secret:swarm-agent/prod/unlock-key-a1B2c3"
	viaSM := func(secretARN string) map[string]string {
		return map[string]string{"kms:ViaService": "secretsmanager." + v["region"] + ".amazonaws.com",
			"kms:EncryptionContext:SecretARN": secretARN}
	}
	type check struct {
		action, resource string
		ctx              map[string]string
		want             bool
	}
	tests := map[string][]check{
		"manager": {
			{"route53:GetHostedZone", zone, nil, false}, // the provider never asks for the zone
			{"route53:ChangeResourceRecordSets", zone, nil, true},
			{"route53:ChangeResourceRecordSets", "arn:aws:route53:::hostedzone/ZOTHERZONE", nil, false},
			{"route53:GetChange", "arn:aws:route53:::change/C0123", nil, true},
			{"ssm:PutParameter", param("prod", "join-token/manager"), nil, true},
			{"ssm:GetParameters", param("prod", "join-token/manager"), nil, true},
			{"ssm:PutParameter", param("staging", "join-token/manager"), nil, false},
			{"ssm:DeleteParameter", param("prod", "join-token/manager"), nil, false},
			{"ssm:PutParameter", param("prod", "unlock-key"), nil, true},
			{"ssm:GetParameters", param("prod", "unlock-key"), nil, true},
			{"ssm:GetParameters", param("staging", "unlock-key"), nil, false},
			{"kms:Encrypt", key, viaSSM(param("prod", "unlock-key")), true},
			{"kms:Decrypt", key, viaSSM(param("prod", "unlock-key")), true},
			{"secretsmanager:CreateSecret", unlockSecret, nil, true},
			{"secretsmanager:PutSecretValue", unlockSecret, nil, true},
			{"secretsmanager:GetSecretValue", unlockSecret, nil, true},
			{"kms:GenerateDataKey", key, viaSM(unlockSecret), true},
			{"kms:Decrypt", key, viaSM(unlockSecret), true},
			{"kms:Encrypt", key, viaSSM(param("prod", "join-token/manager")), true},
			{"kms:Decrypt", key, viaSSM(param("prod", "join-token/worker")), true},
			{"kms:Decrypt", key, viaSSM(param("staging", "join-token/manager")), false},
			{"kms:Decrypt", key, direct, false},
			{"secretsmanager:CreateSecret", secret("prod", "manager"), nil, true},
			{"secretsmanager:PutSecretValue", secret("prod", "worker"), nil, true},
			{"secretsmanager:GetSecretValue", secret("prod", "manager"), nil, true},
			{"secretsmanager:RestoreSecret", secret("prod", "manager"), nil, true},
			{"secretsmanager:PutSecretValue", secret("staging", "worker"), nil, false},
			{"secretsmanager:DeleteSecret", secret("prod", "worker"), nil, false},
			{"kms:GenerateDataKey", key, viaSM(secret("prod", "manager")), true},
			{"kms:Decrypt", key, viaSM(secret("prod", "worker")), true},
			{"kms:GenerateDataKey", key, viaSM(secret("staging", "manager")), false},
			{"autoscaling:CompleteLifecycleAction", group(v["worker_group"]), nil, true},
			{"autoscaling:RecordLifecycleActionHeartbeat", group(v["manager_group"]), nil, true},
			{"autoscaling:CompleteLifecycleAction", group("someone-elses-group"), nil, false},
			// The leader keeps scale-in protection on the managers quorum needs: on the
			// managers' group only.
			{"autoscaling:SetInstanceProtection", group(v["manager_group"]), nil, true},
			{"autoscaling:SetInstanceProtection", group(v["worker_group"]), nil, false},
			{"autoscaling:SetInstanceProtection", group("someone-elses-group"), nil, false},
			{"autoscaling:DescribeLifecycleHooks", "*", nil, true},
			{"ec2:DescribeInstances", "*", nil, true},
			// The leader drains the nodes of instances whose status checks fail.
			{"ec2:DescribeInstanceStatus", "*", nil, true},
			{"ec2:TerminateInstances", "*", nil, false},
			{"sqs:ReceiveMessage", queue, nil, true},
			{"sqs:DeleteMessage", queue, nil, true},
			{"sqs:ReceiveMessage", queue + "-other", nil, false},
		},
		"worker": {
			{"ssm:GetParameters", param("prod", "join-token/worker"), nil, true},
			{"ssm:GetParameters", param("prod", "cluster-id"), nil, true},
			{"ssm:GetParameters", param("prod", "join-token/manager"), nil, false},
			{"ssm:GetParameter", param("prod", "join-token/manager"), nil, false},
			{"ssm:GetParametersByPath", param("prod", "join-token"), nil, false},
			{"ssm:GetParameters", param("staging", "join-token/worker"), nil, false},
			// The unlock key decrypts the managers' Raft state: a worker never reads it.
			{"ssm:GetParameters", param("prod", "unlock-key"), nil, false},
			{"kms:Decrypt", key, viaSSM(param("prod", "unlock-key")), false},
			{"secretsmanager:GetSecretValue", unlockSecret, nil, false},
			{"kms:Decrypt", key, viaSM(unlockSecret), false},
			{"kms:Decrypt", key, viaSSM(param("prod", "join-token/worker")), true},
			{"kms:Decrypt", key, viaSSM(param("prod", "join-token/manager")), false},
			{"kms:Decrypt", key, direct, false},
			{"secretsmanager:GetSecretValue", secret("prod", "worker"), nil, true},
			{"secretsmanager:GetSecretValue", secret("prod", "manager"), nil, false},
			{"secretsmanager:GetSecretValue", secret("prod", "worker-old"), nil, false},
			{"secretsmanager:GetSecretValue", secret("staging", "worker"), nil, false},
			{"kms:Decrypt", key, viaSM(secret("prod", "worker")), true},
			{"kms:Decrypt", key, viaSM(secret("prod", "manager")), false},
			{"route53:ListResourceRecordSets", zone, nil, true},
			{"route53:GetHostedZone", zone, nil, false},
			{"autoscaling:CompleteLifecycleAction", group(v["worker_group"]), nil, true},
			{"autoscaling:RecordLifecycleActionHeartbeat", group(v["worker_group"]), nil, true},
			{"autoscaling:CompleteLifecycleAction", group(v["manager_group"]), nil, false},
			{"autoscaling:DescribeAutoScalingInstances", "*", nil, true},
			{"autoscaling:SetInstanceProtection", group(v["worker_group"]), nil, false},
			{"autoscaling:SetInstanceProtection", group(v["manager_group"]), nil, false},
		},
	}
	// Whatever the resource: a worker never writes tokens or DNS, never encrypts, reads no queue.
	neverWorker := []string{"ssm:PutParameter", "ssm:DeleteParameter", "route53:ChangeResourceRecordSets",
		"secretsmanager:PutSecretValue", "secretsmanager:CreateSecret", "kms:GenerateDataKey",
		"kms:Encrypt", "sqs:ReceiveMessage", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus"}
	for role, checks := range tests {
		t.Run(role, func(t *testing.T) {
			_, rendered := readPolicy(t, role)
			p, probs := checkPolicy(rendered)
			if len(probs) > 0 {
				t.Fatalf("schema: %v", probs)
			}
			for _, c := range checks {
				if got := p.allows(c.action, c.resource, c.ctx); got != c.want {
					t.Errorf("%s on %s (context %v): allowed = %t, want %t", c.action, c.resource, c.ctx, got, c.want)
				}
			}
			if role == "worker" {
				for _, a := range neverWorker {
					if p.grants(a) {
						t.Errorf("worker policy grants %s", a)
					}
				}
			}
		})
	}
}

// TestIAMPolicyTerraformTemplatefile renders each policy with the real terraform's templatefile(),
// as the Terraform example does: it must accept the file (no stray template sequences, every
// placeholder given) and produce the same JSON as renderPolicy.
func TestIAMPolicyTerraformTemplatefile(t *testing.T) {
	vars := map[string]any{}
	for k, v := range policyVars {
		vars[k] = v
	}
	for _, role := range slices.Sorted(maps.Keys(policyFiles)) {
		t.Run(role, func(t *testing.T) {
			_, want := readPolicy(t, role)
			abs, err := filepath.Abs(policyFiles[role])
			if err != nil {
				t.Fatal(err)
			}
			got := terraformEval(t, fmt.Sprintf("templatefile(%s, %s)", hclString(abs), hclValue(vars)))
			if !bytes.Equal(got, want) {
				t.Errorf("terraform templatefile() differs from renderPolicy\nterraform:\n%s\ngo:\n%s", got, want)
			}
		})
	}
}
