package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/moby/moby/client"

	"github.com/swarm-agent/swarm-agent/internal/localcluster"
	"github.com/swarm-agent/swarm-agent/internal/testbed"
)

// TestIntegrationSecretsManagerTokens: with --token-store=secretsmanager the first manager
// publishes the join tokens as secrets (not SSM parameters), a worker joins with the worker
// secret, the setting survives into `run` through the persisted configuration, and the leader
// republishes a rotated worker token there so that a new worker joins within one pass.
func TestIntegrationSecretsManagerTokens(t *testing.T) {
	t.Parallel() // each test has a bed, moto and front of its own
	c := newCluster(t, 1, 2)
	ctx := t.Context()
	manager, w1, w2 := c.Bed.Nodes[0], c.Bed.Nodes[1], c.Bed.Nodes[2]
	const store = "--token-store=secretsmanager"
	if r := c.Boot(ctx, manager, "manager", store); r.Code != 0 {
		t.Fatalf("boot of the manager: exit %d\n%s", r.Code, keyLines(r.Stderr))
	}
	if r := c.Boot(ctx, w1, "worker", store); r.Code != 0 || r.Result.Action != "join" {
		t.Fatalf("boot of a worker: exit %d action %q\n%s", r.Code, r.Result.Action, keyLines(r.Stderr))
	}
	count := c.Front.Count
	if n := count("ssm", ""); n != 0 {
		t.Errorf("%d SSM requests with --token-store=secretsmanager, want 0", n)
	}
	if n := count("secretsmanager", "CreateSecret"); n != 2 {
		t.Errorf("%d CreateSecret calls, want 2 (one secret per role)", n)
	}
	sm := secretsmanager.NewFromConfig(c.AWS, func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(c.Front.APIURL()) })
	secretToken := func(role string) string {
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("swarm-agent/" + localcluster.ClusterName + "/join-token/" + role)})
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Token string }
		if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil {
			t.Fatalf("the %s secret is not the store's JSON: %v", role, err) // never print the value
		}
		return v.Token
	}
	d := must[*client.Client](t)(c.Docker(manager))
	before := must[client.SwarmInspectResult](t)(d.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	if secretToken("worker") != before.JoinTokens.Worker || secretToken("manager") != before.JoinTokens.Manager {
		t.Fatal("the secrets do not hold the swarm's join tokens") // never print tokens
	}

	startRuns(t, c, []*testbed.Node{manager})
	if _, err := d.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: before.Version, Spec: before.Spec, RotateWorkerToken: true}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	after := must[client.SwarmInspectResult](t)(d.SwarmInspect(ctx, client.SwarmInspectOptions{})).Swarm
	wait := leaderPass + 25*time.Second
	if r := c.Boot(ctx, w2, "worker", store, fmt.Sprintf("--wait=%s", wait)); r.Code != 0 {
		t.Fatalf("worker booted after the rotation: exit %d after %s, want 0 within %s\n%s", r.Code, time.Since(rotated).Round(time.Millisecond), wait, keyLines(r.Stderr))
	}
	t.Logf("worker joined %s after the rotation", time.Since(rotated).Round(time.Millisecond))
	if secretToken("worker") != after.JoinTokens.Worker {
		t.Error("the worker secret does not hold the rotated token")
	}
	if n := count("ssm", ""); n != 0 {
		t.Errorf("%d SSM requests from `run` with the persisted secretsmanager setting, want 0", n)
	}
	v := must[localcluster.View](t)(c.View(ctx, c.Bed.Nodes))
	if v.Managers != 1 || v.Workers != 2 || len(v.ClusterIDs) != 1 {
		t.Fatalf("after the joins: %+v", v)
	}
}
