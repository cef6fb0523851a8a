// Package discovery is how managers are found, locked and registered: the interfaces the boot
// and the leader use (Discoverer, Locker, Registrar, TokenStore, ...), their sentinel errors,
// and the discovery string ("provider=route53 zone_id=Z123 name=...") that picks a provider.
// The providers live under it (route53, consul, static, and the token stores ssmtokens and
// smtokens) and import only this package and swarm, never the boot algorithm.
package discovery

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Spec is a parsed discovery string: a provider and its keys.
type Spec struct {
	Provider string
	Args     map[string]string
}

// Get returns the value of key, or def when it is absent.
func (s Spec) Get(key, def string) string {
	if v, ok := s.Args[key]; ok {
		return v
	}
	return def
}

// Parse reads "provider=NAME key=value key='quoted value' ...". Keys are lower-case words with
// letters, digits and underscores; a value may be double- or single-quoted to hold spaces.
// Every key may appear once.
func Parse(in string) (Spec, error) {
	s := Spec{Args: map[string]string{}}
	rest := strings.TrimSpace(in)
	if rest == "" {
		return Spec{}, fmt.Errorf("discovery string is empty: want \"provider=NAME key=value ...\"")
	}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		sp := strings.IndexFunc(rest, unicode.IsSpace)
		if eq < 0 || (sp >= 0 && sp < eq) {
			word := rest
			if sp >= 0 {
				word = rest[:sp]
			}
			return Spec{}, fmt.Errorf("discovery string: %q is not key=value", word)
		}
		key := rest[:eq]
		if !validKey(key) {
			return Spec{}, fmt.Errorf("discovery string: key %q: must be lower-case letters, digits and _", key)
		}
		rest = rest[eq+1:]
		var val string
		if rest != "" && (rest[0] == '"' || rest[0] == '\'') {
			q := rest[0]
			end := strings.IndexByte(rest[1:], q)
			if end < 0 {
				return Spec{}, fmt.Errorf("discovery string: value of %q: unterminated quote", key)
			}
			val = rest[1 : end+1]
			rest = rest[end+2:]
			if rest != "" && !unicode.IsSpace(rune(rest[0])) {
				return Spec{}, fmt.Errorf("discovery string: value of %q: text after closing quote", key)
			}
		} else {
			end := strings.IndexFunc(rest, unicode.IsSpace)
			if end < 0 {
				end = len(rest)
			}
			val = rest[:end]
			rest = rest[end:]
			if strings.ContainsAny(val, "\"'") {
				return Spec{}, fmt.Errorf("discovery string: value of %q: quote inside unquoted value", key)
			}
		}
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		if _, dup := s.Args[key]; dup || (key == "provider" && s.Provider != "") {
			return Spec{}, fmt.Errorf("discovery string: key %q given twice", key)
		}
		if key == "provider" {
			s.Provider = val
			continue
		}
		s.Args[key] = val
	}
	if s.Provider == "" {
		return Spec{}, fmt.Errorf("discovery string: provider=NAME is missing")
	}
	return s, nil
}

func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// CheckKeys fails naming the first key that the provider does not know.
func (s Spec) CheckKeys(allowed ...string) error {
	keys := make([]string, 0, len(s.Args))
	for k := range s.Args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("discovery provider %s: unknown key %q (known: %s)", s.Provider, k, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// Require fails naming the first of keys that is missing or empty.
func (s Spec) Require(keys ...string) error {
	for _, k := range keys {
		if s.Args[k] == "" {
			return fmt.Errorf("discovery provider %s: %s= is required", s.Provider, k)
		}
	}
	return nil
}
