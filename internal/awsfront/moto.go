package awsfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Moto is a moto_server process started by StartMoto.
type Moto struct {
	url  string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	once sync.Once
}

// ErrNoMoto means moto_server is not installed (pip install 'moto[server]').
var ErrNoMoto = errors.New("moto_server not found in PATH")

// StartMoto runs `moto_server -H host -p port` and waits until it answers. Port 0 picks a free
// port. Close kills it.
func StartMoto(ctx context.Context, host string, port int) (*Moto, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, ErrNoMoto
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("find free port on %s: %w", host, err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	m := &Moto{
		url:  "http://" + net.JoinHostPort(host, strconv.Itoa(port)),
		out:  &syncBuffer{},
		done: make(chan struct{}),
	}
	m.cmd = exec.Command(bin, "-H", host, "-p", strconv.Itoa(port))
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()

	hc := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := hc.Get(m.url + "/moto-api/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			_ = m.Close()
			return nil, fmt.Errorf("wait for moto_server on %s: %w", m.url, ctx.Err())
		case <-m.done:
			return nil, fmt.Errorf("moto_server on %s exited: %s", m.url, bytes.TrimSpace(m.out.Bytes()))
		case <-deadline.C:
			_ = m.Close()
			return nil, fmt.Errorf("moto_server on %s did not answer within 60s: %s", m.url, bytes.TrimSpace(m.out.Bytes()))
		case <-tick.C:
		}
	}
}

// URL is moto's base URL.
func (m *Moto) URL() string { return m.url }

// Close kills moto_server and waits for it to exit.
func (m *Moto) Close() error {
	m.once.Do(func() {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
		}
	})
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
