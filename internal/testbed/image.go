package testbed

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// busyboxTar is a root file system with busybox as /bin/busybox and applets linked to it.
var busyboxTar = sync.OnceValues(func() ([]byte, error) {
	path, err := exec.LookPath("busybox")
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
	}
	for _, applet := range []string{"sh", "sleep", "true", "false", "echo", "cat", "ls", "hostname", "ip", "wget", "nc", "ping"} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
})

// LoadImage imports Image (busybox from the host's busybox-static) into n's engine.
func (b *Bed) LoadImage(ctx context.Context, n *Node) error {
	rootfs, err := busyboxTar()
	if err != nil {
		return fmt.Errorf("load %s into %s: build rootfs: %w", Image, n.Name, err)
	}
	repo, tag, _ := strings.Cut(strings.TrimPrefix(Image, "localhost:1/"), ":")
	q := url.Values{"fromSrc": {"-"}, "repo": {"localhost:1/" + repo}, "tag": {tag}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/images/create?"+q.Encode(), bytes.NewReader(rootfs))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := unixClient(n.Socket()).Do(req)
	if err != nil {
		return fmt.Errorf("load %s into %s: %w", Image, n.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	// The engine streams JSON progress; a failure shows as status != 200 or an "error" field.
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("load %s into %s: %s: %s", Image, n.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
