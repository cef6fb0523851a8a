package discovery

import (
	"fmt"
	"regexp"
)

var clusterRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CheckCluster is the token stores' rule for a cluster name, which becomes part of a parameter
// path or secret name: 1..64 letters, digits, '.', '_' or '-'.
func CheckCluster(cluster string) error {
	if !clusterRe.MatchString(cluster) {
		return fmt.Errorf("cluster %q: must be 1..64 letters, digits, '.', '_' or '-'", cluster)
	}
	return nil
}
