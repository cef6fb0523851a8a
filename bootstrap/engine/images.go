package engine

import (
	"context"
	"fmt"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"
)

// maxImageRefLen bounds an image reference (Docker's own limit on a repository name is 255
// bytes; a tag and a digest come on top).
const maxImageRefLen = 512

// ParseImageRef checks an image reference as `docker pull` takes it (busybox,
// registry.example.com:5000/team/app:1.2, app@sha256:...) and returns its normalized form
// (docker.io/library/busybox:latest).
func ParseImageRef(s string) (string, error) {
	if s == "" || len(s) > maxImageRefLen {
		return "", fmt.Errorf("image reference %q: must be 1-%d bytes", s, maxImageRefLen)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", s, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// EnsureImage makes the image ref present in the engine: an image already there is left as it
// is (pulled reports false), a missing one is pulled from its registry.
func (e *Engine) EnsureImage(ctx context.Context, ref string) (pulled bool, err error) {
	if _, err := e.c.ImageInspect(ctx, ref); err == nil {
		return false, nil
	} else if !IsNotFound(err) {
		return false, e.wrap("inspect image "+ref, err)
	}
	resp, err := e.c.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return false, e.wrap("pull image "+ref, err)
	}
	defer resp.Close()
	if err := resp.Wait(ctx); err != nil {
		return false, e.wrap("pull image "+ref, err)
	}
	return true, nil
}
