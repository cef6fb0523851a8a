package packaging

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-agent/swarm-agent/discovery"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// golden compares got with the file at path, or rewrites the file with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./packaging -run %s -update to create it): %v", t.Name(), err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./packaging -update refreshes it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// userDataCases are the golden cases; manager and worker are the examples in user_data/.
var userDataCases = []struct {
	name   string
	golden string
	in     UserData
}{
	{"manager", "user_data/manager.yaml", UserData{
		Role: "manager", Cluster: "prod",
		Discovery: "provider=route53 zone_id=Z0123456789EXAMPLE name=managers.swarm.internal",
	}},
	{"worker", "user_data/worker.yaml", UserData{
		Role: "worker", Cluster: "prod",
		Discovery: "provider=route53 zone_id=Z0123456789EXAMPLE name=managers.swarm.internal",
		Labels:    map[string]string{"workload": "general"},
	}},
	{"consul-labels-kms", "testdata/user_data/consul-labels-kms.yaml", UserData{
		Role: "manager", Cluster: "staging.eu-1",
		Discovery: "provider=consul service=swarm-manager address=https://127.0.0.1:8501 ca_file=/etc/consul.d/ca.pem",
		Labels:    map[string]string{"workload": "database", "team/owner": "payments", "zone": "a=b"},
		KMSKeyID:  "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
	}},
	{"secretsmanager", "testdata/user_data/secretsmanager.yaml", UserData{
		Role: "worker", Cluster: "big",
		Discovery:  "provider=route53 zone_id=Z0123456789EXAMPLE name=managers.swarm.internal",
		TokenStore: "secretsmanager",
		LaunchHook: "swarm-agent-launch",
	}},
	{"warm-pool", "testdata/user_data/warm-pool.yaml", UserData{
		Role: "worker", Cluster: "prod",
		Discovery:      "provider=route53 zone_id=Z0123456789EXAMPLE name=managers.swarm.internal",
		WarmPullImages: []string{"nginx:1.27", "registry.example.com:5000/team/app@sha256:" + strings.Repeat("0", 64)},
	}},
	{"quoting", "testdata/user_data/quoting.yaml", UserData{
		Role: "worker", Cluster: "q",
		Discovery: `provider=static managers='10.0.0.1, 10.0.0.2' note="it's $HOME; ` + "`id`" + ` & <b> \ done"`,
		Labels:    map[string]string{"say": "it's $(id) \\ `x` * ? ~ # ; & | > < ü"},
	}},
}

func TestRenderUserDataGolden(t *testing.T) {
	for _, tc := range userDataCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderUserData(tc.in)
			if err != nil {
				t.Fatalf("RenderUserData(%+v): %v", tc.in, err)
			}
			golden(t, tc.golden, got)
		})
	}
}

// TestUserDataRunsBoot runs each rendered user_data the way cloud-init does: its YAML parsed
// (by cloud-init's own code when installed, else by the line-based check below), the runcmd items
// written to a /bin/sh script, and the script run with stand-ins for swarm-agent and systemctl
// that record their arguments. The agent must get exactly the settings, word for word.
func TestUserDataRunsBoot(t *testing.T) {
	for _, tc := range userDataCases {
		t.Run(tc.name, func(t *testing.T) {
			ud, err := RenderUserData(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			script := runcmdScript(t, ud)
			calls := runScript(t, script, 0)
			want := [][]string{append([]string{"swarm-agent"}, expectedBootArgs(tc.in)...),
				{"systemctl", "enable", "--now", AgentUnitName}}
			if !reflect.DeepEqual(calls, want) {
				t.Errorf("commands run:\n%q\nwant:\n%q", calls, want)
			}
			// The discovery string the agent receives is one it parses.
			if _, err := discovery.Parse(strings.TrimPrefix(calls[0][4], "--discovery=")); err != nil {
				t.Errorf("agent's discovery.Parse rejects the rendered value: %v", err)
			}
		})
	}
	t.Run("boot fails, service not enabled", func(t *testing.T) {
		ud, err := RenderUserData(userDataCases[0].in)
		if err != nil {
			t.Fatal(err)
		}
		calls := runScript(t, runcmdScript(t, ud), 6)
		if len(calls) != 1 || calls[0][0] != "swarm-agent" {
			t.Errorf("after a failed boot the script ran %q, want only the boot command", calls)
		}
	})
}

func expectedBootArgs(u UserData) []string {
	args := []string{"boot", "--role=" + u.Role, "--cluster=" + u.Cluster, "--discovery=" + u.Discovery}
	if len(u.Labels) > 0 {
		var pairs []string
		for _, k := range slices.Sorted(maps.Keys(u.Labels)) {
			pairs = append(pairs, k+"="+u.Labels[k])
		}
		args = append(args, "--labels="+strings.Join(pairs, ","))
	}
	if u.KMSKeyID != "" {
		args = append(args, "--kms-key-id="+u.KMSKeyID)
	}
	if u.TokenStore != "" {
		args = append(args, "--token-store="+u.TokenStore)
	}
	if len(u.WarmPullImages) > 0 {
		args = append(args, "--warm-pull-images="+strings.Join(u.WarmPullImages, ","))
	}
	if u.LaunchHook != "" {
		args = append(args, "--launch-hook-name="+u.LaunchHook)
	}
	return args
}

// runcmdScript turns user_data into the shell script cloud-init writes for runcmd.
func runcmdScript(t *testing.T, ud []byte) string {
	t.Helper()
	items, err := cloudConfigRuncmd(ud)
	if err != nil {
		t.Fatalf("user_data structure: %v\n%s", err, ud)
	}
	goScript := "#!/bin/sh\n" + strings.Join(items, "\n") + "\n" // cloud-init's util.shellify for strings
	if !cloudInitInstalled() {
		return goScript
	}
	const py = `import sys
from cloudinit import util
cfg = util.load_yaml(sys.stdin.read())
if not isinstance(cfg, dict) or not isinstance(cfg.get("runcmd"), list):
    sys.exit("cloud-init could not load the user_data as a mapping with a runcmd list")
sys.stdout.write(util.shellify(cfg["runcmd"]))
`
	cmd := exec.CommandContext(t.Context(), "/usr/bin/python3", "-c", py)
	cmd.Stdin = bytes.NewReader(ud)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cloud-init's YAML loader and shellify: %v\n%s", err, stderr.Bytes())
	}
	if string(out) != goScript {
		t.Errorf("cloud-init's runcmd script differs from the line-based reading\ncloud-init:\n%s\nline-based:\n%s", out, goScript)
	}
	return string(out)
}

// cloudInitInstalled: Debian's cloud-init package (its Python modules for /usr/bin/python3).
func cloudInitInstalled() bool {
	_, err := os.Stat("/usr/lib/python3/dist-packages/cloudinit/util.py")
	return err == nil
}

// runScript runs script with AgentPath and systemctl replaced by recorders; the agent's stand-in
// exits with bootExit. It returns each command run with its arguments.
func runScript(t *testing.T, script string, bootExit int) [][]string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	recorder := func(name string, exit int) string {
		p := filepath.Join(dir, name)
		body := fmt.Sprintf("#!/bin/sh\n{ printf '%%s\\0' %s \"$@\"; printf '\\n'; } >>%q\nexit %d\n", name, log, exit)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agent := recorder("swarm-agent", bootExit)
	recorder("systemctl", 0)
	if strings.Count(script, AgentPath+" ") != 1 {
		t.Fatalf("script should call %s once:\n%s", AgentPath, script)
	}
	script = strings.Replace(script, AgentPath+" ", agent+" ", 1)
	path := filepath.Join(dir, "runcmd")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "/bin/sh", path)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "HOME=/nonexistent"}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case bootExit == 0 && err != nil:
		t.Fatalf("runcmd script failed: %v\n%s", err, out)
	case bootExit != 0 && (!errors.As(err, &exitErr) || exitErr.ExitCode() != bootExit):
		t.Fatalf("runcmd script: err=%v, want exit code %d (set -e)", err, bootExit)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("no command ran: %v", err)
	}
	var calls [][]string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\x00\n"), "\x00\n") {
		calls = append(calls, strings.Split(line, "\x00"))
	}
	return calls
}

// cloudConfigRuncmd checks, line by line, the YAML structure that this package writes (the main
// module has no YAML parser, and should not get one for a test): the "#cloud-config" header,
// comment lines, one top-level key "runcmd:" and under it "  - " items, each a double-quoted
// scalar written as a JSON string. It returns the items, decoded.
func cloudConfigRuncmd(ud []byte) ([]string, error) {
	text := string(ud)
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if lines[0] != "#cloud-config" {
		return nil, fmt.Errorf("line 1 is %q, want #cloud-config (cloud-init ignores user_data without it)", lines[0])
	}
	var items []string
	inRuncmd := false
	for i, l := range lines[1:] {
		n := i + 2
		switch {
		case strings.ContainsAny(l, "\t\r"):
			return nil, fmt.Errorf("line %d: tab or carriage return", n)
		case strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimLeft(l, " "), "#"):
		case l == "runcmd:":
			if inRuncmd || items != nil {
				return nil, fmt.Errorf("line %d: runcmd given twice", n)
			}
			inRuncmd = true
		case strings.HasPrefix(l, "  - "):
			if !inRuncmd {
				return nil, fmt.Errorf("line %d: list item outside runcmd", n)
			}
			var s string
			if err := json.Unmarshal([]byte(l[len("  - "):]), &s); err != nil || !strings.HasPrefix(l[len("  - "):], `"`) {
				return nil, fmt.Errorf("line %d: item %q is not one double-quoted scalar", n, l[len("  - "):])
			}
			items = append(items, s)
		default:
			return nil, fmt.Errorf("line %d: %q is not a comment, runcmd: or a runcmd item", n, l)
		}
	}
	if len(items) == 0 {
		return nil, errors.New("no runcmd items")
	}
	return items, nil
}

// TestUserDataYAML parses the rendered user_data with real YAML parsers where the machine has
// them: PyYAML (which cloud-init uses) and `cloud-init schema`, which checks the cloud-config
// schema (runcmd must be a list of strings or lists).
func TestUserDataYAML(t *testing.T) {
	for _, tc := range userDataCases {
		t.Run(tc.name, func(t *testing.T) {
			ud, err := RenderUserData(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			items, err := cloudConfigRuncmd(ud)
			if err != nil {
				t.Fatalf("line-based check: %v", err)
			}
			t.Run("pyyaml", func(t *testing.T) {
				py, err := exec.LookPath("python3")
				if err != nil || exec.Command(py, "-c", "import yaml").Run() != nil {
					t.Skip("python3 with PyYAML not found")
				}
				cmd := exec.CommandContext(t.Context(), py, "-c",
					"import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
				cmd.Stdin = bytes.NewReader(ud)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("yaml.safe_load: %v", err)
				}
				var got map[string][]string
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("PyYAML's reading is not a mapping of string lists: %v: %s", err, out)
				}
				if want := map[string][]string{"runcmd": items}; !reflect.DeepEqual(got, want) {
					t.Errorf("PyYAML reads %q, the line-based check %q", got, want)
				}
			})
			t.Run("cloud-init schema", func(t *testing.T) {
				ci, err := exec.LookPath("cloud-init")
				if err != nil {
					t.Skip("cloud-init not installed (Debian package cloud-init)")
				}
				path := filepath.Join(t.TempDir(), "user-data")
				if err := os.WriteFile(path, ud, 0o644); err != nil {
					t.Fatal(err)
				}
				out, err := exec.CommandContext(t.Context(), ci, "schema", "--config-file", path).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
					t.Errorf("cloud-init schema: err=%v\n%s", err, out)
				}
			})
		})
	}
}

// TestUserDataTerraformTwin renders user_data/cloud-config.yaml.tftpl with the real terraform's
// templatefile() and compares it byte for byte with RenderUserData: the Terraform example's
// instances get exactly what the Go renderer (and its tests) produce.
func TestUserDataTerraformTwin(t *testing.T) {
	tftpl, err := filepath.Abs("user_data/cloud-config.yaml.tftpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range userDataCases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := RenderUserData(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			labels := map[string]any{}
			for k, v := range tc.in.Labels {
				labels[k] = v
			}
			vars := map[string]any{"role": tc.in.Role, "cluster": tc.in.Cluster, "discovery": tc.in.Discovery,
				"labels": labels, "kms_key_id": tc.in.KMSKeyID, "token_store": tc.in.TokenStore,
				"warm_pull_images": warmImages(tc.in), "launch_hook": tc.in.LaunchHook}
			if got := slices.Sorted(maps.Keys(vars)); !slices.Equal(got, tftplVars) {
				t.Fatalf("rendering with %v, but main.tf passes %v (tftplVars)", got, tftplVars)
			}
			got := terraformEval(t, fmt.Sprintf("templatefile(%s, %s)", hclString(tftpl), hclValue(vars)))
			if !bytes.Equal(got, want) {
				t.Errorf("terraform templatefile() differs from RenderUserData\nterraform:\n%s\ngo:\n%s", got, want)
			}
		})
	}
}

// terraformEval evaluates a string expression with `terraform console` (no configuration, no
// providers, nothing downloaded) and returns its value. It skips when terraform is absent.
func terraformEval(t *testing.T, expr string) []byte {
	t.Helper()
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Skip("terraform not found in PATH")
	}
	dir := t.TempDir()
	rc := filepath.Join(dir, "terraformrc")
	if err := os.WriteFile(rc, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), tf, "console")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1")
	cmd.Stdin = strings.NewReader("base64encode(" + expr + ")\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("terraform console: %v\n%s%s", err, out, stderr.Bytes())
	}
	var b64 string
	if err := json.Unmarshal(bytes.TrimSpace(out), &b64); err != nil {
		t.Fatalf("terraform console printed %q: %v", out, err)
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hclString writes s as an HCL quoted string: JSON escapes, plus $${ and %%{ so that no template
// sequence is interpreted.
func hclString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	r := strings.NewReplacer("${", "$${", "%{", "%%{")
	return r.Replace(string(b))
}

// hclValue writes strings and maps of them as HCL literals.
func hclValue(v any) string {
	switch v := v.(type) {
	case string:
		return hclString(v)
	case map[string]any:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, hclString(k)+" = "+hclValue(v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []string:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = hclString(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		panic(fmt.Sprintf("hclValue: unsupported %T", v))
	}
}

func TestRenderUserDataRejects(t *testing.T) {
	ok := UserData{Role: "worker", Cluster: "prod", Discovery: "provider=static managers=10.0.0.1"}
	tests := []struct {
		name   string
		change func(*UserData)
		want   string // every line of the error names the field and the value
	}{
		{"role", func(u *UserData) { u.Role = "boss" }, `user_data Role "boss": must be manager or worker`},
		{"warm image with a comma", func(u *UserData) { u.WarmPullImages = []string{"nginx,busybox"} }, `user_data WarmPullImages "nginx,busybox": must be an image reference`},
		{"warm image with shell syntax", func(u *UserData) { u.WarmPullImages = []string{"nginx;reboot"} }, `user_data WarmPullImages "nginx;reboot": must be an image reference`},
		{"empty role", func(u *UserData) { u.Role = "" }, `user_data Role "": must be manager or worker`},
		{"cluster", func(u *UserData) { u.Cluster = "prod cluster" }, `user_data Cluster "prod cluster": must be 1-64`},
		{"cluster too long", func(u *UserData) { u.Cluster = strings.Repeat("c", 65) }, `user_data Cluster "ccc`},
		{"cluster dot first", func(u *UserData) { u.Cluster = ".x" }, `user_data Cluster ".x"`},
		{"no discovery", func(u *UserData) { u.Discovery = " " }, `user_data Discovery " ": is required`},
		{"discovery newline", func(u *UserData) { u.Discovery = "provider=static managers=10.0.0.1\nrm -rf /" }, `must be printable UTF-8: no newlines`},
		{"discovery no provider", func(u *UserData) { u.Discovery = "zone_id=Z1" }, `user_data Discovery "zone_id=Z1": must name its provider`},
		{"discovery bad utf-8", func(u *UserData) { u.Discovery = "provider=static x=\xff" }, `must be printable UTF-8`},
		{"label key", func(u *UserData) { u.Labels = map[string]string{"bad key": "v"} }, `user_data Labels key "bad key"`},
		{"label comma", func(u *UserData) { u.Labels = map[string]string{"k": "a,b"} }, `user_data Labels[k] "a,b": must not contain ','`},
		{"label quote", func(u *UserData) { u.Labels = map[string]string{"k": `a"b`} }, `user_data Labels[k] "a\"b"`},
		{"label empty", func(u *UserData) { u.Labels = map[string]string{"k": ""} }, `user_data Labels[k] "": must not be empty`},
		{"kms", func(u *UserData) { u.KMSKeyID = "key id" }, `user_data KMSKeyID "key id"`},
		{"kms too long", func(u *UserData) { u.KMSKeyID = strings.Repeat("k", 1001) }, `user_data KMSKeyID "kkk`},
		{"launch hook too long", func(u *UserData) { u.LaunchHook = strings.Repeat("h", 256) }, `user_data LaunchHook "hhh`},
		{"token store", func(u *UserData) { u.TokenStore = "dynamodb" }, `user_data TokenStore "dynamodb"`},
		{"launch hook", func(u *UserData) { u.LaunchHook = "hook name" }, `user_data LaunchHook "hook name"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := ok
			tc.change(&u)
			out, err := RenderUserData(u)
			if err == nil {
				t.Fatalf("RenderUserData(%+v) = %q, want an error", u, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("every problem reported", func(t *testing.T) {
		_, err := RenderUserData(UserData{Role: "x", Cluster: "", Discovery: ""})
		if err == nil || strings.Count(err.Error(), "\n") != 2 {
			t.Errorf("error = %v, want three lines (role, cluster, discovery)", err)
		}
	})
	if _, err := RenderUserData(ok); err != nil {
		t.Errorf("RenderUserData(%+v): %v", ok, err)
	}
}

// FuzzRenderUserData: whatever RenderUserData accepts is user_data of the expected structure
// whose boot command, split as sh splits it, gives the agent exactly the input values.
func FuzzRenderUserData(f *testing.F) {
	for _, tc := range userDataCases {
		var k, v string
		for k, v = range tc.in.Labels {
			break
		}
		f.Add(tc.in.Role, tc.in.Cluster, tc.in.Discovery, k, v, tc.in.KMSKeyID)
	}
	f.Add("worker", "a", "provider=x y='''", "k", "'\\''", "")
	f.Fuzz(func(t *testing.T, role, cluster, disc, lk, lv, kms string) {
		u := UserData{Role: role, Cluster: cluster, Discovery: disc, KMSKeyID: kms}
		if lk != "" {
			u.Labels = map[string]string{lk: lv}
		}
		ud, err := RenderUserData(u)
		if err != nil {
			return
		}
		items, err := cloudConfigRuncmd(ud)
		if err != nil {
			t.Fatalf("structure: %v\n%s", err, ud)
		}
		if len(items) != 3 || items[0] != "set -e" {
			t.Fatalf("runcmd items %q", items)
		}
		words, err := shellSplit(items[1])
		if err != nil {
			t.Fatalf("split %q: %v", items[1], err)
		}
		want := append([]string{AgentPath}, expectedBootArgs(u)...)
		if !reflect.DeepEqual(words, want) {
			t.Errorf("sh would pass %q, want %q", words, want)
		}
	})
}

// shellSplit splits a command line into words as sh does, for the subset shellQuote writes:
// bare words and single-quoted strings, escaped single quotes outside quotes; anything that
// would expand ($, `, glob and operator characters) outside quotes is an error.
func shellSplit(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte("$`\"*?[]~#;&|<>(){}!\t\n", c) >= 0:
			return nil, fmt.Errorf("unquoted %q at %d", c, i)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// warmImages is the template's warm_pull_images: a list, never null.
func warmImages(u UserData) []string {
	if u.WarmPullImages == nil {
		return []string{}
	}
	return u.WarmPullImages
}
