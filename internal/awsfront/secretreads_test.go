package awsfront_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/swarm-agent/swarm-agent/internal/awsfront"
	"github.com/swarm-agent/swarm-agent/internal/awsfront/fronttest"
)

// TestGetSecretValueSharedReads: GetSecretValue requests that arrive together share one read
// of moto (200 readers at once cost far fewer reads), yet a read never answers a request that
// arrived after a write returned: while readers hammer the secret, every value written is
// what the next read (started after the write's answer) returns, and no reader ever sees a
// value older than the last write that had returned when it asked.
func TestGetSecretValueSharedReads(t *testing.T) {
	t.Parallel()
	e := fronttest.Start(t, map[string]awsfront.Limit{"secretsmanager": {}, "secretsmanager.GetSecretValue": {}})
	ctx := t.Context()
	id := aws.String("swarm-agent/shared/join-token/worker")
	if _, err := e.SM.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: id, SecretString: aws.String("v0")}); err != nil {
		t.Fatal(err)
	}
	before := e.Front.SecretReadsOfMoto()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Go(func() {
			out, err := e.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: id})
			switch {
			case err != nil:
				errs <- err
			case aws.ToString(out.SecretString) != "v0":
				errs <- fmt.Errorf("read %q, want v0", aws.ToString(out.SecretString))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if reads := e.Front.SecretReadsOfMoto() - before; reads >= 100 {
		t.Errorf("200 reads at once made %d reads of moto, want them shared", reads)
	}

	// Writes while readers run: a read that starts after a write returned sees it.
	var written sync.Mutex // held by the writer from a write's start until it is recorded
	last := 0
	stop := make(chan struct{})
	var readers sync.WaitGroup
	bad := make(chan string, 100)
	for range 8 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				written.Lock()
				floor := last
				written.Unlock()
				out, err := e.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: id})
				if err != nil {
					bad <- err.Error()
					return
				}
				var got int
				if _, err := fmt.Sscanf(aws.ToString(out.SecretString), "v%d", &got); err != nil || got < floor {
					bad <- fmt.Sprintf("read %q after v%d had been written", aws.ToString(out.SecretString), floor)
					return
				}
			}
		})
	}
	for i := 1; i <= 20; i++ {
		if _, err := e.SM.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: id, SecretString: aws.String(fmt.Sprintf("v%d", i))}); err != nil {
			t.Fatal(err)
		}
		written.Lock()
		last = i
		written.Unlock()
		out, err := e.SM.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: id})
		if err != nil || aws.ToString(out.SecretString) != fmt.Sprintf("v%d", i) {
			t.Fatalf("read after writing v%d: %q, %v", i, aws.ToString(out.SecretString), err)
		}
	}
	close(stop)
	readers.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
}
