package agent

// Where a Config comes from and how a bad one is told: flags, then the environment, then the
// env file; one ConfigError listing every problem.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/pflag"
)

// ConfigError lists every problem found in the configuration, one line each.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string { return strings.Join(e.Problems, "\n") }

// ErrUsage marks usage errors (exit code 2).
var ErrUsage = errors.New("usage")

func (e *ConfigError) Unwrap() error { return ErrUsage }

// resolve fills every flag the user did not set from the environment, then the config file.
// Unknown SWARM_AGENT_* names are reported: a misspelt variable must not pass silently.
func resolve(fs *pflag.FlagSet, environ []string, readFile func(string) ([]byte, error)) error {
	var problems []string
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	known := map[string]bool{}
	for n := range options {
		known[envName(n)] = true
	}
	known[EnvPrefix+"CONFIG_FILE"] = true
	for k := range env {
		if !known[k] && !strings.HasPrefix(k, EnvPrefix+"TEST_") {
			problems = append(problems, fmt.Sprintf("environment variable %s: unknown setting", k))
		}
	}
	// Which config file: flag, then env, then default.
	path := DefaultConfigFile
	if f := fs.Lookup("config-file"); f != nil && f.Changed {
		path = f.Value.String()
	} else if v, ok := env[EnvPrefix+"CONFIG_FILE"]; ok {
		path = v
	}
	file := map[string]string{}
	if path != "" && readFile != nil {
		data, err := readFile(path)
		switch {
		case err == nil:
			file, err = ParseEnvFile(data)
			if err != nil {
				problems = append(problems, fmt.Sprintf("config file %s: %v", path, err))
			}
			for k := range file {
				if !known[k] {
					problems = append(problems, fmt.Sprintf("config file %s: %s: unknown setting", path, k))
				}
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			problems = append(problems, fmt.Sprintf("config file %s: %v", path, err))
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := envName(f.Name)
		src, v, ok := "environment variable "+name, env[name], false
		if _, ok = env[name]; !ok {
			v, ok = file[name]
			src = fmt.Sprintf("%s in %s", name, path)
		}
		if f.Name == "config-file" {
			if ev, eok := env[name]; eok {
				v, ok, src = ev, true, "environment variable "+name
			} else {
				ok = false
			}
		}
		if !ok {
			return
		}
		if v == "" && f.Value.Type() == "stringToString" {
			return // an empty map, as renderEnvFile writes it
		}
		if err := f.Value.Set(v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%s: %s", src, showValue(v), parseRule(f, v, err)))
		}
	})
	if len(problems) > 0 {
		sort.Strings(problems)
		return &ConfigError{problems}
	}
	return nil
}

// showValue quotes a value for an error line. A value longer than maxShown bytes is cut to its
// first maxShown bytes (on a character boundary) and followed by its length, so that a 100 KB
// value makes a readable line: "aaaa..." (100000 bytes).
func showValue(v string) string {
	if len(v) <= maxShown {
		return strconv.Quote(v)
	}
	n := maxShown
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return fmt.Sprintf("%s (%d bytes)", strconv.Quote(v[:n]+"..."), len(v))
}

// parseRule is what a line says of a value v that does not parse as flag f's type. The parser's
// message repeats the value whole, so it is kept only for a value that showValue shows whole.
func parseRule(f *pflag.Flag, v string, err error) string {
	if len(v) > maxShown {
		return "not a valid " + f.Value.Type()
	}
	return err.Error()
}

// flagError is the usage error for a command line that does not parse, with a bad value or
// unknown flag name shown as showValue shows it.
func flagError(err error) error {
	var invalid *pflag.InvalidValueError
	var unknown *pflag.NotExistError
	switch {
	case errors.As(err, &invalid) && invalid.GetFlag() != nil:
		f, v := invalid.GetFlag(), invalid.GetValue()
		return &ConfigError{[]string{fmt.Sprintf("--%s=%s (%s): %s", f.Name, showValue(v), envName(f.Name), parseRule(f, v, invalid.Unwrap()))}}
	case errors.As(err, &unknown) && len(unknown.GetSpecifiedName()) > maxShown:
		return &ConfigError{[]string{"unknown flag: " + showValue("--"+unknown.GetSpecifiedName())}}
	case len(err.Error()) > 4*maxShown:
		return &ConfigError{[]string{showValue(err.Error())}}
	}
	return &ConfigError{[]string{err.Error()}}
}

// ParseEnvFile reads KEY=VALUE lines (optionally "export KEY=VALUE"), with # comments and
// single- or double-quoted values, as systemd's EnvironmentFile and /etc/default files use.
func ParseEnvFile(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 1 && (v[0] == '"' || v[0] == '\'') {
			if len(v) < 2 || v[len(v)-1] != v[0] {
				return nil, fmt.Errorf("line %d: %s: unterminated quote", n, k)
			}
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`).Replace(v)
			}
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("line %d: %s given twice", n, k)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// renderEnvFile writes the persisted settings of fs as an environment file.
func renderEnvFile(fs *pflag.FlagSet) []byte {
	var b strings.Builder
	b.WriteString("# Written by swarm-agent boot; read by swarm-agent.service. No secrets here.\n")
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if o, ok := options[f.Name]; ok && o.persist {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		v := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		if f.Value.Type() == "stringToString" {
			v = strings.Trim(v, "[]")
		}
		fmt.Fprintf(&b, "%s=\"%s\"\n", envName(n), strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`).Replace(v))
	}
	return []byte(b.String())
}
