// Package packaging holds what ships next to the binary: systemd units, user_data templates, IAM
// policies, the package and image build definitions. Go code embeds the units and templates.
package packaging

import (
	"embed"
	"io/fs"
	"maps"
	"path"
	"slices"
)

// AgentUnitName is the agent's service.
const AgentUnitName = "swarm-agent.service"

//go:embed systemd/*.service
var units embed.FS

// Units returns the systemd units by file name (swarm-agent.service, ...).
func Units() map[string][]byte {
	out := map[string][]byte{}
	matches, _ := fs.Glob(units, "systemd/*") // the pattern is constant and valid
	for _, m := range matches {
		b, _ := units.ReadFile(m) // embedded: cannot fail
		out[path.Base(m)] = b
	}
	return out
}

// UnitNames lists the units in Units, sorted.
func UnitNames() []string { return slices.Sorted(maps.Keys(Units())) }
