package packaging

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"

	"github.com/swarm-agent/swarm-agent/swarm"
)

// UserData is what one group of instances (managers or workers of a cluster) boots with.
type UserData struct {
	Role      string            // manager or worker: --role
	Cluster   string            // cluster name: --cluster
	Discovery string            // discovery string, e.g. "provider=route53 zone_id=Z123 name=managers.swarm.internal": --discovery
	Labels    map[string]string // operator node labels (optional): --labels
	KMSKeyID  string            // KMS key of the join tokens (optional; managers encrypt with it): --kms-key-id
	// TokenStore is where join tokens live (optional; the agent's default is ssm, or consul with
	// consul discovery): ssm, secretsmanager or consul: --token-store
	TokenStore string
	// WarmPullImages are the images an instance launched into a warm pool pulls while it
	// prepares (optional): --warm-pull-images
	WarmPullImages []string
	// LaunchHook is the group's launch lifecycle hook (EC2_INSTANCE_LAUNCHING) that boot
	// completes once the node is in the swarm (optional; without it boot makes no Auto Scaling
	// call): --launch-hook-name
	LaunchHook string
}

// AgentPath is where the image (Packer) and the packages (nfpm) install the binary.
const AgentPath = "/usr/bin/swarm-agent"

//go:embed user_data/cloud-config.yaml.tmpl
var userDataTemplate string

// The same rules as the agent's flag validation (agent/config.go), so that user_data that renders
// is user_data that boots; a label value must also survive pflag's CSV split of --labels.
var (
	clusterRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	// The lengths of KMS key ids (at most 1000) and hook names (at most 255) are checked
	// apart: a regexp's {1,1000} costs every start of the agent 20 ms to compile.
	kmsKeyRE   = regexp.MustCompile(`^[A-Za-z0-9:/_-]+$`)
	hookNameRE = regexp.MustCompile(`^[A-Za-z0-9\-_/]+$`)
	// imageRE: an image reference's characters (the agent checks the grammar), no comma (the
	// flag is a comma-separated list).
	imageRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,511}$`)
	// shellSafe words need no quoting in sh; the Terraform template uses the same class.
	shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)
)

var userDataTmpl = template.Must(template.New("cloud-config").Funcs(template.FuncMap{
	"yamlString": yamlString,
}).Parse(userDataTemplate))

// RenderUserData renders cloud-init user_data (#cloud-config) that runs `swarm-agent boot` with
// u's settings and then enables and starts the agent's service. Every bad field is reported, one
// line each, naming the field, the value and the rule.
func RenderUserData(u UserData) ([]byte, error) {
	if err := u.validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err := userDataTmpl.Execute(&b, struct {
		UserData
		BootCommand string
	}{u, u.bootCommand()})
	if err != nil {
		return nil, fmt.Errorf("render user_data: %w", err)
	}
	return b.Bytes(), nil
}

func (u UserData) validate() error {
	var errs []error
	bad := func(field, val, rule string) {
		errs = append(errs, fmt.Errorf("user_data %s %q: %s", field, val, rule))
	}
	if _, err := swarm.ParseRole(u.Role); err != nil {
		bad("Role", u.Role, "must be manager or worker")
	}
	if !clusterRE.MatchString(u.Cluster) {
		bad("Cluster", u.Cluster, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	switch {
	case strings.TrimSpace(u.Discovery) == "":
		bad("Discovery", u.Discovery, `is required, e.g. "provider=route53 zone_id=Z123 name=managers.swarm.internal"`)
	case !printable(u.Discovery):
		bad("Discovery", u.Discovery, "must be printable UTF-8: no newlines, tabs or other control characters")
	case !slices.ContainsFunc(strings.Fields(u.Discovery), func(f string) bool { return strings.HasPrefix(f, "provider=") }):
		bad("Discovery", u.Discovery, "must name its provider=route53, consul or static")
	}
	for _, k := range slices.Sorted(maps.Keys(u.Labels)) {
		v := u.Labels[k]
		switch {
		case !labelKeyRE.MatchString(k):
			bad("Labels key", k, "label keys are 1-128 letters, digits, '.', '_', '/', '-', starting with a letter or digit")
		case v == "":
			bad("Labels["+k+"]", v, "must not be empty")
		case strings.ContainsAny(v, `,"`) || !printable(v):
			bad("Labels["+k+"]", v, `must not contain ',' or '"' (--labels is a comma-separated list) and must be printable UTF-8`)
		}
	}
	if u.KMSKeyID != "" && (len(u.KMSKeyID) > 1000 || !kmsKeyRE.MatchString(u.KMSKeyID)) {
		bad("KMSKeyID", u.KMSKeyID, "must be a KMS key id, key ARN, alias name or alias ARN")
	}
	if u.TokenStore != "" && !slices.Contains([]string{"ssm", "secretsmanager", "consul"}, u.TokenStore) {
		bad("TokenStore", u.TokenStore, "must be ssm, secretsmanager or consul (or empty for the agent's default)")
	}
	for _, img := range u.WarmPullImages {
		if !imageRE.MatchString(img) {
			bad("WarmPullImages", img, "must be an image reference such as nginx:1.27 or registry.example.com/app@sha256:... (letters, digits, . _ / : @ + -; up to 512 bytes)")
		}
	}
	if u.LaunchHook != "" && (len(u.LaunchHook) > 255 || !hookNameRE.MatchString(u.LaunchHook)) {
		bad("LaunchHook", u.LaunchHook, "must be a lifecycle hook name: 1-255 letters, digits, '-', '_', '/'")
	}
	return errors.Join(errs...)
}

// printable: valid UTF-8 of printable characters and ASCII spaces, which YAML's double-quoted
// scalars and sh's single quotes carry unchanged.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// bootCommand is the `swarm-agent boot` line, every value quoted for sh.
func (u UserData) bootCommand() string {
	words := []string{AgentPath, "boot",
		"--role=" + shellQuote(u.Role),
		"--cluster=" + shellQuote(u.Cluster),
		"--discovery=" + shellQuote(u.Discovery),
	}
	if len(u.Labels) > 0 {
		pairs := make([]string, 0, len(u.Labels))
		for _, k := range slices.Sorted(maps.Keys(u.Labels)) {
			pairs = append(pairs, k+"="+u.Labels[k])
		}
		words = append(words, "--labels="+shellQuote(strings.Join(pairs, ",")))
	}
	if u.KMSKeyID != "" {
		words = append(words, "--kms-key-id="+shellQuote(u.KMSKeyID))
	}
	if u.TokenStore != "" {
		words = append(words, "--token-store="+shellQuote(u.TokenStore))
	}
	if len(u.WarmPullImages) > 0 {
		words = append(words, "--warm-pull-images="+shellQuote(strings.Join(u.WarmPullImages, ",")))
	}
	if u.LaunchHook != "" {
		words = append(words, "--launch-hook-name="+shellQuote(u.LaunchHook))
	}
	return strings.Join(words, " ")
}

// shellQuote returns s as one sh word: as it is when it holds only safe characters, else in
// single quotes, where an embedded single quote is written as quote, backslash, quote, quote.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// yamlString returns s as a YAML double-quoted scalar. A JSON string is one (YAML 1.2 is a
// superset of JSON); Terraform's jsonencode writes the same bytes, HTML escapes included.
func yamlString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}
