package packaging

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/lifecycle/control"
)

const terraformDir = "terraform"

// The variables the Terraform example passes to user_data/cloud-config.yaml.tftpl, the same that
// TestUserDataTerraformTwin renders it with.
var tftplVars = []string{"cluster", "discovery", "kms_key_id", "labels", "launch_hook", "role", "token_store", "warm_pull_images"}

// terraformCmd runs terraform offline in dir: no update check, an empty CLI configuration, its
// data directory in a temporary folder. It skips the test when terraform is not installed.
func terraformCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform not found in PATH")
	}
	tmp := t.TempDir()
	rc := filepath.Join(tmp, "terraformrc")
	if err := os.WriteFile(rc, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), tf, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"TF_DATA_DIR="+filepath.Join(tmp, "data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTerraformFormat: `terraform fmt -check` parses every file as HCL and wants canonical form.
func TestTerraformFormat(t *testing.T) {
	out, err := terraformCmd(t, terraformDir, "fmt", "-check", "-diff", "-recursive", "-no-color")
	if err != nil {
		t.Errorf("terraform fmt -check: %v (run `terraform fmt packaging/terraform`)\n%s", err, out)
	}
}

// TestTerraformConfigLoads runs Terraform's own configuration loader (`terraform providers`,
// which needs no provider): block structure, duplicate names, meta-arguments (count, for_each,
// depends_on, lifecycle), variable blocks and version constraints. `terraform validate` would
// also check each resource's arguments, but needs the aws provider, which cannot be downloaded
// here.
func TestTerraformConfigLoads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range terraformFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := terraformCmd(t, dir, "providers", "-no-color")
	if err != nil || !strings.Contains(out, "provider[registry.terraform.io/hashicorp/aws]") {
		t.Errorf("terraform providers: %v\n%s", err, out)
	}
}

func terraformFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(terraformDir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s: %v", terraformDir, err)
	}
	return files
}

// stripHCL returns src with comments removed (strings kept), and an error for an unbalanced
// bracket or an unterminated string. It follows template interpolations inside strings, so
// that "${join(",", x)}" is one string. Heredocs are not used in this example and are refused.
func stripHCL(src string) (string, error) {
	type mode struct {
		str   bool // in a quoted string; else in code
		depth int  // open { in this code level (an interpolation ends at its closing })
	}
	stack := []mode{{}}
	var brackets []byte // open ( [ { in code, for balance
	var out strings.Builder
	line := 1
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\n' {
			line++
		}
		top := &stack[len(stack)-1]
		if top.str {
			out.WriteByte(c)
			switch {
			case c == '\\' && i+1 < len(src):
				i++
				out.WriteByte(src[i])
			case c == '"':
				stack = stack[:len(stack)-1]
			case c == '\n':
				return "", fmt.Errorf("line %d: newline in a quoted string", line-1)
			case (c == '$' || c == '%') && strings.HasPrefix(src[i+1:], "{") && !strings.HasPrefix(src[i-1:], string(c)+string(c)):
				i++
				out.WriteByte('{')
				stack = append(stack, mode{})
			}
			continue
		}
		switch {
		case c == '#' || strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			i-- // keep the newline
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return "", fmt.Errorf("line %d: unterminated /* comment", line)
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 3
		case strings.HasPrefix(src[i:], "<<"):
			return "", fmt.Errorf("line %d: heredoc: not supported by this check", line)
		case c == '"':
			out.WriteByte(c)
			stack = append(stack, mode{str: true})
		case c == '}' && len(stack) > 1 && top.depth == 0: // end of an interpolation
			out.WriteByte(c)
			stack = stack[:len(stack)-1]
		default:
			out.WriteByte(c)
			switch c {
			case '(', '[', '{':
				brackets = append(brackets, c)
				if c == '{' {
					top.depth++
				}
			case ')', ']', '}':
				want := map[byte]byte{')': '(', ']': '[', '}': '{'}[c]
				if len(brackets) == 0 || brackets[len(brackets)-1] != want {
					return "", fmt.Errorf("line %d: unbalanced %q", line, c)
				}
				brackets = brackets[:len(brackets)-1]
				if c == '}' {
					top.depth--
				}
			}
		}
	}
	if len(stack) != 1 {
		return "", errors.New("unterminated string or interpolation at end of file")
	}
	if len(brackets) > 0 {
		return "", fmt.Errorf("unclosed %q at end of file", brackets)
	}
	return out.String(), nil
}

// blockKeys returns the attribute names directly inside the first block or object that opens
// with a line matching open (e.g. `locals {` or `policy_vars = {`), in every match.
func blockKeys(code string, open *regexp.Regexp) []string {
	var keys []string
	lines := strings.Split(code, "\n")
	for i := 0; i < len(lines); i++ {
		if !open.MatchString(lines[i]) {
			continue
		}
		depth := 1
		for i++; i < len(lines) && depth > 0; i++ {
			l := lines[i]
			if depth == 1 {
				if m := regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=`).FindStringSubmatch(l); m != nil {
					keys = append(keys, m[1])
				}
			}
			depth += strings.Count(l, "{") + strings.Count(l, "[") + strings.Count(l, "(") -
				strings.Count(l, "}") - strings.Count(l, "]") - strings.Count(l, ")")
		}
		i--
	}
	return keys
}

// TestTerraformReferences checks what the configuration loader does not: every var., local.,
// resource and data reference names something declared; every variable is used; every
// templatefile() names a file that exists and is given exactly the variables the file uses.
func TestTerraformReferences(t *testing.T) {
	code := map[string]string{}
	var all strings.Builder
	for _, f := range terraformFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := stripHCL(string(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		code[filepath.Base(f)] = c
		all.WriteString(c + "\n")
	}
	src := all.String()
	set := func(re string, group int, in string) map[string]bool {
		out := map[string]bool{}
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(in, -1) {
			out[m[group]] = true
		}
		return out
	}
	dotted := func(m map[string]bool) map[string]bool { // "type" "name" -> type.name
		out := map[string]bool{}
		for k := range m {
			out[strings.ReplaceAll(strings.Trim(k, `"`), `" "`, ".")] = true
		}
		return out
	}
	declared := map[string]map[string]bool{
		"variable": set(`(?m)^variable "([a-z0-9_]+)"`, 1, src),
		"local":    {},
		"resource": dotted(set(`(?m)^resource ("[a-z0-9_]+" "[a-z0-9_]+")`, 1, src)),
		"data":     dotted(set(`(?m)^data ("[a-z0-9_]+" "[a-z0-9_]+")`, 1, src)),
	}
	for _, k := range blockKeys(src, regexp.MustCompile(`^locals \{`)) {
		declared["local"][k] = true
	}
	outside := ""
	for name, c := range code {
		if name != "variables.tf" {
			outside += c
		}
	}
	used := map[string]map[string]bool{
		"variable": set(`\bvar\.([a-z0-9_]+)`, 1, outside),
		"local":    set(`\blocal\.([a-z0-9_]+)`, 1, src),
		"resource": set(`(?:^|[^.a-z0-9_])(aws_[a-z0-9_]+\.[a-z0-9_]+)`, 1, src),
		"data":     set(`\bdata\.([a-z0-9_]+\.[a-z0-9_]+)`, 1, src),
	}
	for kind, names := range used {
		for n := range names {
			if !declared[kind][n] {
				t.Errorf("%s %s is referenced but not declared", kind, n)
			}
		}
	}
	for _, kind := range []string{"variable", "local"} {
		for n := range declared[kind] {
			if !used[kind][n] {
				t.Errorf("%s %s is declared but never used", kind, n)
			}
		}
	}
	if len(declared["resource"]) < 10 || len(used["resource"]) < 10 {
		t.Errorf("found %d resources and %d references: the scan is broken", len(declared["resource"]), len(used["resource"]))
	}

	// templatefile(): the files exist (for each role where the path has ${each.key}).
	calls := regexp.MustCompile(`templatefile\("\$\{path\.module\}/([^"]+)"`).FindAllStringSubmatch(src, -1)
	if len(calls) != 2 {
		t.Fatalf("want 2 templatefile() calls (policies, user_data), found %d", len(calls))
	}
	for _, c := range calls {
		for _, role := range []string{"manager", "worker"} {
			p := filepath.Join(terraformDir, strings.ReplaceAll(c[1], "${each.key}", role))
			if _, err := os.Stat(p); err != nil {
				t.Errorf("templatefile(%q): %v", c[1], err)
			}
		}
	}
	// The policies get exactly the placeholders they use.
	placeholders := map[string]bool{}
	for _, f := range policyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range placeholderRE.FindAllSubmatch(b, -1) {
			placeholders[string(m[1])] = true
		}
	}
	pv := blockKeys(src, regexp.MustCompile(`^\s*policy_vars\s*=\s*\{`))
	if got, want := slices.Sorted(slices.Values(pv)), slices.Sorted(maps.Keys(placeholders)); !slices.Equal(got, want) {
		t.Errorf("local.policy_vars has %v, the policies use %v", got, want)
	}
	if got, want := slices.Sorted(maps.Keys(policyVars)), slices.Sorted(maps.Keys(placeholders)); !slices.Equal(got, want) {
		t.Errorf("the tests render the policies with %v, the policies use %v", got, want)
	}
	// The user_data template gets the variables TestUserDataTerraformTwin renders it with.
	uv := blockKeys(src, regexp.MustCompile(`cloud-config\.yaml\.tftpl", \{`))
	if got := slices.Sorted(slices.Values(uv)); !slices.Equal(got, tftplVars) {
		t.Errorf("the user_data templatefile() gets %v, want %v", got, tftplVars)
	}
}

// TestTerraformPromises pins what packaging/README.md says the example does.
func TestTerraformPromises(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(terraformDir, "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for what, re := range map[string]string{
		"SOA negative-answer TTL (MINIMUM) of 10 s": `type\s+= "SOA"[\s\S]*?records\s+= \["[^"]* 1 7200 900 1209600 10"\]`,
		"IMDSv2 only on the instances":              `http_tokens\s+= "required"`,
		"termination lifecycle hooks":               `lifecycle_transition\s+= "autoscaling:EC2_INSTANCE_TERMINATING"`,
		"hooks default to CONTINUE":                 `default_result\s+= "CONTINUE"`,
		"EventBridge rule for the hooks' events":    `"detail-type" = \["EC2 Instance-terminate Lifecycle Action", "EC2 Instance-launch Lifecycle Action"\]`,
		// Both groups hold new instances until their node is in the swarm, the first ones too
		// (an initial hook), and replace those whose boot gave up.
		"launch hooks on both groups, ABANDON by default": `(?s)resource "aws_autoscaling_group" "managers".*initial_lifecycle_hook \{\s*name\s+= local\.launch_hook\s+lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"\s+heartbeat_timeout\s+= var\.lifecycle_heartbeat_timeout\s+default_result\s+= "ABANDON".*resource "aws_autoscaling_group" "workers".*initial_lifecycle_hook \{\s*name\s+= local\.launch_hook\s+lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"`,
		// AWS Health's scheduled changes to the same queue, kept as long as SQS keeps a
		// message (they come up to two weeks ahead).
		"an EventBridge rule for AWS Health's EC2 scheduled changes": `(?s)resource "aws_cloudwatch_event_rule" "health".*source\s+= \["aws\.health"\]\s+"detail-type" = \["AWS Health Event"\]\s+detail = \{\s+service\s+= \["EC2"\]\s+eventTypeCategory = \["scheduledChange"\]`,
		"its target, the queue":                 `(?s)resource "aws_cloudwatch_event_target" "health" \{.*?arn\s+= aws_sqs_queue\.termination\[0\]\.arn`,
		"the queue lets it send":                `aws:SourceArn"\s+values\s+= concat\(\[aws_cloudwatch_event_rule\.termination\[0\]\.arn\], aws_cloudwatch_event_rule\.health\[\*\]\.arn\)`,
		"14 days' retention with Health events": `message_retention_seconds\s+= var\.enable_health_events \? 1209600 : 7200`,
		"policies from packaging/iam":           `templatefile\("\$\{path\.module\}/\.\./iam/\$\{each\.key\}-policy\.json", local\.policy_vars\)`,
		"managers' ASG one size (quorum)":       `min_size\s+= var\.manager_count\s+max_size\s+= var\.manager_count`,
		// Workers drain through the managers' control API: without it open among members, a
		// worker's drain cannot start on AWS.
		"the agent's control API port among members": fmt.Sprintf(`control-api\s+= \{ protocol = "tcp", port = %d,`, control.DefaultPort),
		// Connections survive scale-in: a network load balancer whose target group both groups
		// register with (so Auto Scaling deregisters a node before its hook), with a
		// deregistration delay, and workers that scale on CPU by themselves.
		// An optional warm pool on the workers' group, reusing instances on scale-in.
		"an optional warm pool with instance reuse":   `(?s)resource "aws_autoscaling_group" "workers".*dynamic "warm_pool" \{\s*for_each = var\.worker_warm_pool == null.*reuse_on_scale_in = warm_pool\.value\.reuse_on_scale_in`,
		"a network load balancer":                     `load_balancer_type\s+= "network"`,
		"a deregistration delay":                      `deregistration_delay = var\.deregistration_delay`,
		"target tracking on the workers' average CPU": `(?s)autoscaling_group_name\s+= aws_autoscaling_group\.workers\.name\s+policy_type\s+= "TargetTrackingScaling".*?predefined_metric_type = "ASGAverageCPUUtilization"`,
	} {
		if !regexp.MustCompile(re).MatchString(src) {
			t.Errorf("main.tf: %s: no match for %s", what, re)
		}
	}
	// Both groups register with the target group, so that Auto Scaling deregisters a node
	// before its termination hook.
	code, err := stripHCL(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{"managers", "workers"} {
		head := `resource "aws_autoscaling_group" "` + group + `" {`
		i := strings.Index(code, head)
		if i < 0 {
			t.Errorf("main.tf: no %s", head)
			continue
		}
		body := code[i+len(head):]
		if j := strings.Index(body, "\nresource "); j >= 0 {
			body = body[:j]
		}
		if !regexp.MustCompile(`target_group_arns\s+= aws_lb_target_group\.ingress\[\*\]\.arn`).MatchString(body) {
			t.Errorf("main.tf: the %s' group is not attached to the load balancer's target group", group)
		}
	}
	vars, err := os.ReadFile(filepath.Join(terraformDir, "variables.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`variable "lifecycle_heartbeat_timeout" \{[^}]*default\s+= 300`).Match(vars) {
		t.Error("variables.tf: lifecycle_heartbeat_timeout should default to 300 s")
	}
	if !regexp.MustCompile(`variable "deregistration_delay" \{[^}]*default\s+= 120`).Match(vars) {
		t.Error("variables.tf: deregistration_delay should default to 120 s (packaging/README.md says so)")
	}
}

func TestStripHCL(t *testing.T) {
	good := map[string]string{
		"comments":              "a = 1 # x {\n// y (\n/* z [ */ b = 2\n",
		"interpolation":         `a = "${join(",", [for k in x : "${k}}"])}"` + "\n",
		"escaped template":      `a = "$${x} %%{y}"` + "\n",
		"braces in strings":     `a = "{[("` + "\n",
		"escaped quote":         `a = "say \"hi\" {"` + "\n",
		"object in interpolate": `a = "${jsonencode({ b = 1 })}"` + "\n",
	}
	for name, src := range good {
		t.Run(name, func(t *testing.T) {
			if _, err := stripHCL(src); err != nil {
				t.Errorf("stripHCL(%q): %v", src, err)
			}
		})
	}
	bad := map[string]string{
		"unclosed brace":       "a {\n",
		"extra brace":          "a {}}\n",
		"mismatched":           "a = [}\n",
		"unterminated string":  `a = "x` + "\n",
		"unterminated interp":  `a = "${x"` + "\n",
		"unterminated comment": "/* x\n",
	}
	for name, src := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := stripHCL(src); err == nil {
				t.Errorf("stripHCL(%q) accepted it", src)
			}
		})
	}
	got, err := stripHCL("a = 1 # c\nb = \"#\" // d\n")
	if err != nil || got != "a = 1 \nb = \"#\" \n" {
		t.Errorf("stripHCL = %q, %v", got, err)
	}
}
