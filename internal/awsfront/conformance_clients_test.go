package awsfront_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asgtypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// runGo makes the calls with aws-sdk-go-v2, each input decoded from the case's parameters.
func runGo(ctx context.Context, e *fronttest.Env, sq *sqs.Client, c confClient, cases []confCase) []confResult {
	vars := map[string]string{}
	for k, v := range c.Vars {
		vars[k] = v
	}
	var out []confResult
	for _, cs := range cases {
		r := confResult{Case: cs.Name}
		params := substitute(must(json.Marshal(cs.Params)), vars)
		got, err := goCall(ctx, e, sq, cs.Service+"."+cs.Operation, params)
		var ae smithy.APIError
		var icb *r53types.InvalidChangeBatch
		switch {
		case errors.As(err, &ae):
			r.Code, r.Message, r.icb = ae.ErrorCode(), ae.ErrorMessage(), errors.As(err, &icb)
		case err != nil:
			r.Code, r.Message = "<go error>", err.Error()
		default:
			_ = json.Unmarshal(must(json.Marshal(got)), &r.Out)
			for v, path := range cs.Save {
				vars[v], _ = dig(r.Out, path)
			}
		}
		out = append(out, r)
	}
	return out
}

func goCall(ctx context.Context, e *fronttest.Env, sq *sqs.Client, op string, params []byte) (any, error) {
	call := func(in any, do func() (any, error)) (any, error) {
		if err := json.Unmarshal(params, in); err != nil {
			return nil, fmt.Errorf("decode %s input: %w", op, err)
		}
		return do()
	}
	switch op {
	case "route53.GetHostedZone":
		in := &route53.GetHostedZoneInput{}
		return call(in, func() (any, error) { return e.R53.GetHostedZone(ctx, in) })
	case "route53.ListResourceRecordSets":
		in := &route53.ListResourceRecordSetsInput{}
		return call(in, func() (any, error) { return e.R53.ListResourceRecordSets(ctx, in) })
	case "route53.ChangeResourceRecordSets":
		in := &route53.ChangeResourceRecordSetsInput{}
		return call(in, func() (any, error) { return e.R53.ChangeResourceRecordSets(ctx, in) })
	case "route53.GetChange":
		in := &route53.GetChangeInput{}
		return call(in, func() (any, error) { return e.R53.GetChange(ctx, in) })
	case "ssm.PutParameter":
		in := &ssm.PutParameterInput{}
		return call(in, func() (any, error) { return e.SSM.PutParameter(ctx, in) })
	case "ssm.GetParameters":
		in := &ssm.GetParametersInput{}
		return call(in, func() (any, error) { return e.SSM.GetParameters(ctx, in) })
	case "ssm.GetParameter":
		in := &ssm.GetParameterInput{}
		return call(in, func() (any, error) { return e.SSM.GetParameter(ctx, in) })
	case "autoscaling.DescribeAutoScalingInstances":
		in := &autoscaling.DescribeAutoScalingInstancesInput{}
		return call(in, func() (any, error) { return e.ASG.DescribeAutoScalingInstances(ctx, in) })
	case "autoscaling.DescribeLifecycleHooks":
		in := &autoscaling.DescribeLifecycleHooksInput{}
		return call(in, func() (any, error) { return e.ASG.DescribeLifecycleHooks(ctx, in) })
	case "autoscaling.RecordLifecycleActionHeartbeat":
		in := &autoscaling.RecordLifecycleActionHeartbeatInput{}
		return call(in, func() (any, error) { return e.ASG.RecordLifecycleActionHeartbeat(ctx, in) })
	case "autoscaling.CompleteLifecycleAction":
		in := &autoscaling.CompleteLifecycleActionInput{}
		return call(in, func() (any, error) { return e.ASG.CompleteLifecycleAction(ctx, in) })
	case "autoscaling.SetInstanceProtection":
		in := &autoscaling.SetInstanceProtectionInput{}
		return call(in, func() (any, error) { return e.ASG.SetInstanceProtection(ctx, in) })
	case "ec2.DescribeInstanceStatus":
		in := &ec2.DescribeInstanceStatusInput{}
		return call(in, func() (any, error) { return e.EC2.DescribeInstanceStatus(ctx, in) })
	case "sqs.ReceiveMessage":
		in := &sqs.ReceiveMessageInput{}
		return call(in, func() (any, error) { return sq.ReceiveMessage(ctx, in) })
	case "sqs.ChangeMessageVisibility":
		in := &sqs.ChangeMessageVisibilityInput{}
		return call(in, func() (any, error) { return sq.ChangeMessageVisibility(ctx, in) })
	case "sqs.DeleteMessage":
		in := &sqs.DeleteMessageInput{}
		return call(in, func() (any, error) { return sq.DeleteMessage(ctx, in) })
	}
	return nil, fmt.Errorf("no Go call for %s", op)
}

// python is an interpreter that runs testdata/conformance.py for the clients it can import.
type python string

// pyDoc is what conformance.py prints.
type pyDoc struct {
	Boto3Version    string                  `json:"boto3_version"`
	BotocoreVersion string                  `json:"botocore_version"`
	AWSCLIVersion   string                  `json:"awscli_version"`
	Results         map[string][]confResult `json:"results"`
	IMDS            map[string]any          `json:"imds"`
	Seconds         map[string]float64      `json:"seconds"` // per client
}

// pythonWithBoto3 finds python3 with boto3, or skips the test saying what is missing, and
// tells whether it imports the AWS CLI too.
func pythonWithBoto3(t *testing.T) (python, bool) {
	t.Helper()
	bin, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("python3 is not installed; CI has it with boto3 and the AWS CLI: %v", err)
	}
	// The interpreter's own path: a pyenv shim costs a second per start.
	const probe = "import sys, boto3\nprint(sys.executable)\ntry:\n    import awscli.clidriver\n    print('cli')\nexcept ImportError:\n    print('no cli')\n"
	out, err := exec.CommandContext(t.Context(), bin, "-c", probe).CombinedOutput()
	if err != nil {
		t.Skipf("python3 cannot import boto3 (pip install boto3, or apt-get install python3-boto3); CI has it: %v: %s", err, bytes.TrimSpace(out))
	}
	exe, cli, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if _, err := os.Stat(exe); err == nil {
		bin = exe
	}
	return python(bin), cli == "cli"
}

// awsInterpreter is the python that the `aws` script names on its #! line (Debian's awscli:
// /usr/bin/python3), when it imports the CLI; "" otherwise (a pyenv shim, a binary build).
func awsInterpreter(ctx context.Context, awsBin string) string {
	path, err := filepath.EvalSymlinks(awsBin)
	if err != nil {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	line, _, _ := strings.Cut(string(head[:n]), "\n")
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if !strings.HasPrefix(line, "#!") || len(fields) == 0 {
		return ""
	}
	interp := fields[0]
	if filepath.Base(interp) == "env" && len(fields) > 1 {
		if interp, err = exec.LookPath(fields[1]); err != nil {
			return ""
		}
	}
	if !strings.Contains(filepath.Base(interp), "python") ||
		exec.CommandContext(ctx, interp, "-c", "import awscli.clidriver").Run() != nil {
		return ""
	}
	return interp
}

func (p python) run(ctx context.Context, env []string, spec map[string]any) (*pyDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a bound, not a budget: loaded CI machines are slow
	defer cancel()
	cmd := exec.CommandContext(ctx, string(p), "-c", string(conformancePy))
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(must(json.Marshal(spec)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s conformance.py: %w\n%s", p, err, stderr.Bytes())
	}
	var doc pyDoc
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("%s conformance.py printed no JSON document: %w\n%s\n%s", p, err, out, stderr.Bytes())
	}
	return &doc, nil
}

// cliEnv is the environment of every client process: dummy credentials, one region, no
// metadata lookups, no configuration files, no retries, no proxy: nothing leaves loopback.
func cliEnv(t *testing.T) []string {
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_DEFAULT_REGION=us-east-1", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		"AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=",
		"NO_PROXY=*", "no_proxy=*", "PYTHONDONTWRITEBYTECODE=1")
}

var awscliError = regexp.MustCompile(`An error occurred \(([^)]*)\) when calling the (\w+) operation(?: \([^)]*\))?: ([\s\S]*)`)

// runAWSExecutable runs the `aws` command: its version, then the named cases at once (they
// must save nothing), or every case in order when no name is given.
func runAWSExecutable(ctx context.Context, bin string, env []string, endpoint string, c confClient, cases []confCase, names ...string) (string, []confResult) {
	run := func(args ...string) (int, []byte, []byte) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		rc := cmd.ProcessState.ExitCode()
		if err != nil && rc == 0 {
			rc = -1
		}
		return rc, stdout.Bytes(), stderr.Bytes()
	}
	vars := map[string]string{}
	for k, v := range c.Vars {
		vars[k] = v
	}
	one := func(cs confCase) confResult {
		params := substitute(must(json.Marshal(cs.Params)), vars)
		rc, stdout, stderr := run("--endpoint-url", endpoint, "--output", "json", cs.Service, kebab(cs.Operation), "--cli-input-json", string(params))
		r := confResult{Case: cs.Name, RC: &rc}
		if rc != 0 {
			if m := awscliError.FindSubmatch(stderr); m != nil {
				r.Code, r.Message = string(m[1]), strings.TrimSpace(string(m[3]))
			} else {
				r.Code, r.Message = "<unparsed>", strings.TrimSpace(string(stderr))
			}
			return r
		}
		if len(bytes.TrimSpace(stdout)) > 0 {
			if err := json.Unmarshal(stdout, &r.Out); err != nil {
				r.Code, r.Message = "<unparsed output>", string(stdout)
			}
		}
		for v, path := range cs.Save {
			vars[v], _ = dig(r.Out, path)
		}
		return r
	}
	var version string
	var results []confResult
	if len(names) == 0 {
		_, out, errOut := run("--version")
		version = string(out) + string(errOut) // v1 prints it on stderr
		for _, cs := range cases {
			results = append(results, one(cs))
		}
		return version, results
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		_, out, errOut := run("--version")
		version = string(out) + string(errOut)
	})
	for _, cs := range cases {
		for _, n := range names {
			if cs.Name == n {
				wg.Go(func() {
					r := one(cs)
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
				})
			}
		}
	}
	wg.Wait()
	return version, results
}

// curlIMDS reads the instance id with an IMDSv2 token, and the status without one.
func curlIMDS(ctx context.Context, curl string, env []string, url string) string {
	run := func(args ...string) string {
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--noproxy", "*", "--max-time", "5"}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			return fmt.Sprintf("<curl %v: %v>", args, err)
		}
		return string(out)
	}
	tok := run("-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", url+"/latest/api/token")
	id := run("-H", "X-aws-ec2-metadata-token: "+tok, url+"/latest/meta-data/instance-id")
	code := run("-o", "/dev/null", "-w", "%{http_code}", url+"/latest/meta-data/instance-id")
	return id + " " + code
}

// confGroup creates a group of n instances with a terminating hook (heartbeat 300 s,
// ABANDON) and returns the instance ids.
func confGroup(t *testing.T, e *fronttest.Env, name string, n int32) []string {
	t.Helper()
	ctx := t.Context()
	if _, err := e.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String("lt-" + name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String("ami-12c6146b"), InstanceType: ec2types.InstanceTypeT3Micro},
	}); err != nil {
		t.Fatalf("create launch template: %v", err)
	}
	if _, err := e.ASG.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		LaunchTemplate:       &asgtypes.LaunchTemplateSpecification{LaunchTemplateName: aws.String("lt-" + name), Version: aws.String("$Latest")},
		MinSize:              aws.Int32(0), MaxSize: aws.Int32(10), DesiredCapacity: aws.Int32(n),
		AvailabilityZones: []string{"us-east-1a"},
	}); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
	if _, err := e.ASG.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(name), LifecycleHookName: aws.String("drain"),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"), HeartbeatTimeout: aws.Int32(300),
		DefaultResult: aws.String("ABANDON"),
	}); err != nil {
		t.Fatalf("put hook: %v", err)
	}
	out, err := e.ASG.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) != 1 || len(out.AutoScalingGroups[0].Instances) != int(n) {
		t.Fatalf("describe group %s: %+v, %v; want %d instances", name, out, err, n)
	}
	var ids []string
	for _, in := range out.AutoScalingGroups[0].Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	return ids
}

func withFailover(s r53types.ResourceRecordSet, id string, role r53types.ResourceRecordSetFailover) r53types.ResourceRecordSet {
	s.SetIdentifier, s.Failover = aws.String(id), role
	return s
}

// substitute replaces {{name}} in a JSON document by the variable's value (JSON-escaped).
func substitute(doc []byte, vars map[string]string) []byte {
	for k, v := range vars {
		esc := must(json.Marshal(v))
		doc = bytes.ReplaceAll(doc, []byte("{{"+k+"}}"), esc[1:len(esc)-1])
	}
	return doc
}

// dig follows a dotted path (list indexes as numbers) into a decoded JSON document and
// renders the value found as text.
func dig(doc any, path string) (string, bool) {
	for _, part := range strings.Split(path, ".") {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[part]
			if !ok {
				return "", false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(d) {
				return "", false
			}
			doc = d[i]
		default:
			return "", false
		}
	}
	switch v := doc.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case nil:
		return "<nil>", true
	}
	return string(must(json.Marshal(doc))), true
}

var kebabRe = regexp.MustCompile(`([a-z0-9])([A-Z])`)

// kebab is the CLI's name of an operation: ChangeResourceRecordSets -> change-resource-record-sets.
func kebab(op string) string {
	return strings.ToLower(kebabRe.ReplaceAllString(op, "$1-$2"))
}

// must is for encoding the test's own values, which cannot fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
