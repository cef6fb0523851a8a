package awsfront

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Secrets Manager reads that arrive together share one read of moto, as the DNS answers do
// (motoSource): AWS serves GetSecretValue at 10,000 requests a second, moto (one Python
// process) at about a hundred, and ten thousand agents reading the same join token at once
// would measure moto rather than the agent. A shared read serves a request only when it
// started after every Secrets Manager write that had returned to its caller when the request
// arrived (Front.smWrites, bumped before a write's answer is sent), and only requests of the
// same caller (access key) with the same body share it. Each request is still logged,
// faulted and throttled on its own.

// smReadOps are the Secrets Manager operations that change nothing; any other counts as a
// write.
var smReadOps = map[string]bool{"GetSecretValue": true, "BatchGetSecretValue": true, "DescribeSecret": true,
	"ListSecrets": true, "ListSecretVersionIds": true, "GetResourcePolicy": true, "GetRandomPassword": true}

// secretRead is one read of moto, shared by the requests that arrive while it is current.
type secretRead struct {
	writes uint64 // Front.smWrites when the read started
	done   chan struct{}
	status int
	header http.Header
	body   []byte
}

// bufferedResponse is an http.ResponseWriter that keeps what it is given.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// getSecretValueShared answers a GetSecretValue from a read of moto shared with the same
// caller's identical requests (see above).
func (f *Front) getSecretValueShared(c *call) {
	key := accessKey(c.r.Header.Get("Authorization")) + "\x00" + string(c.body)
	writes := f.smWrites.Load()
	f.mu.Lock()
	if f.secretReads == nil {
		f.secretReads = map[string]*secretRead{}
	}
	rd := f.secretReads[key]
	lead := rd == nil || rd.writes != writes
	if lead {
		rd = &secretRead{writes: writes, done: make(chan struct{})}
		f.secretReads[key] = rd
	}
	f.mu.Unlock()
	if lead {
		f.smReads.Add(1)
		// Detached from this request: the others waiting on it must not fail with its deadline.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), 30*time.Second)
		buf := &bufferedResponse{header: http.Header{}}
		r := c.r.Clone(ctx)
		r.Body = http.NoBody
		if len(c.body) > 0 {
			r.Body = readCloser{bytes.NewReader(c.body)}
		}
		f.proxy.ServeHTTP(buf, r)
		cancel()
		rd.status, rd.header, rd.body = buf.status, buf.header, buf.body.Bytes()
		if rd.status != http.StatusOK || f.smWrites.Load() != writes {
			f.mu.Lock()
			if f.secretReads[key] == rd {
				delete(f.secretReads, key) // never serve an error or a read a write overtook to later requests
			}
			f.mu.Unlock()
		}
		close(rd.done)
	} else {
		select {
		case <-rd.done:
		case <-c.r.Context().Done():
			return
		}
	}
	h := c.w.Header()
	for k, v := range rd.header {
		h[k] = v
	}
	if !lead {
		h.Set("X-Amzn-Requestid", f.nextID("req-"))
	}
	c.w.WriteHeader(rd.status)
	_, _ = c.w.Write(rd.body)
}

// SecretReadsOfMoto counts the GetSecretValue reads the front made of moto: fewer than the
// requests when they shared reads.
func (f *Front) SecretReadsOfMoto() int64 { return f.smReads.Load() }

// readCloser is a bytes.Reader with a Close.
type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// accessKey is the access key id of a SigV4 Authorization header ("" when it has none).
func accessKey(h string) string {
	i := strings.Index(h, "Credential=")
	if i < 0 {
		return ""
	}
	cred, _, _ := strings.Cut(h[i+len("Credential="):], "/")
	return cred
}

// smWriteCounted is the response writer of a Secrets Manager write: it bumps Front.smWrites
// before the answer's first byte goes out (moto has applied the write by then), so that no
// read shared before the write serves a request that arrives after it returned.
type smWriteCounted struct {
	http.ResponseWriter
	f    *Front
	once sync.Once
}

func (w *smWriteCounted) bump() { w.once.Do(func() { w.f.smWrites.Add(1) }) }

func (w *smWriteCounted) WriteHeader(code int) {
	w.bump()
	w.ResponseWriter.WriteHeader(code)
}

func (w *smWriteCounted) Write(p []byte) (int, error) {
	w.bump()
	return w.ResponseWriter.Write(p)
}

func (w *smWriteCounted) Flush() {
	w.bump()
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}
