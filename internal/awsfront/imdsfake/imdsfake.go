// Package imdsfake serves EC2 instance metadata (IMDSv2 only) for many instances at once,
// telling callers apart by their source IP the way each EC2 instance sees only its own metadata.
package imdsfake

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names as EC2 uses them.
const (
	TokenHeader    = "X-aws-ec2-metadata-token"
	TokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
)

// MaxTokenTTL is the longest token lifetime IMDS grants (six hours).
const MaxTokenTTL = 21600 * time.Second

// Lifecycle states that autoscaling/target-lifecycle-state reports.
const (
	StateInService  = "InService"
	StateTerminated = "Terminated"
	StateStandby    = "Standby"
	StateDetached   = "Detached"
	StateWarmed     = "Warmed:Stopped"
)

// ErrNotFound is returned by Update for an instance the server does not hold.
var ErrNotFound = errors.New("instance not found")

// Instance is the metadata of one EC2 instance.
type Instance struct {
	ID           string            `json:"id"`
	PrivateIP    string            `json:"private_ip"`
	AZ           string            `json:"az"`
	Region       string            `json:"region"`
	InstanceType string            `json:"instance_type"`
	ASG          string            `json:"asg"`
	Tags         map[string]string `json:"tags"`
	// TagsEnabled is the instance's InstanceMetadataTags option: without it the tags/ items
	// answer 404.
	TagsEnabled bool `json:"tags_enabled"`
	// TargetLifecycleState is what autoscaling/target-lifecycle-state answers; empty means
	// InService while the instance belongs to an ASG. Without an ASG the item is 404.
	TargetLifecycleState string `json:"target_lifecycle_state"`
	// SpotAction is the spot interruption notice; nil means none (404).
	SpotAction *SpotAction `json:"spot_action"`
	// RebalanceAt is the rebalance recommendation's notice time; nil means none (404).
	RebalanceAt *time.Time `json:"rebalance_at"`
	// Events are the instance's scheduled events: the active ones are listed under
	// events/maintenance/scheduled, the completed and canceled ones under
	// events/maintenance/history.
	Events []Event `json:"events"`
}

// Event is an EC2 scheduled event of an instance.
type Event struct {
	ID          string    `json:"id"`   // instance-event-0123456789abcdef0
	Code        string    `json:"code"` // instance-reboot, system-reboot, system-maintenance, instance-retirement, instance-stop
	Description string    `json:"description"`
	State       string    `json:"state"` // active (default), completed or canceled
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"` // zero: none
	// NotBeforeDeadline is the latest start an operator may move the event to (shown by
	// DescribeInstanceStatus); zero: none.
	NotBeforeDeadline time.Time `json:"not_before_deadline"`
}

// Event states.
const (
	EventActive    = "active"
	EventCompleted = "completed"
	EventCanceled  = "canceled"
)

// EventTime is the layout of the times in events/maintenance/*: "21 Jan 2019 09:00:43 GMT".
const EventTime = "2 Jan 2006 15:04:05 GMT"

// SpotAction is a spot interruption notice: Action is terminate, stop or hibernate.
type SpotAction struct {
	Action string    `json:"action"`
	Time   time.Time `json:"time"`
}

func (in Instance) clone() Instance {
	in.Tags = maps.Clone(in.Tags)
	if in.SpotAction != nil {
		sa := *in.SpotAction
		in.SpotAction = &sa
	}
	if in.RebalanceAt != nil {
		t := *in.RebalanceAt
		in.RebalanceAt = &t
	}
	in.Events = slices.Clone(in.Events)
	return in
}

// Server is an http.Handler that answers IMDSv2 requests. The zero value is not usable; use New.
type Server struct {
	mu        sync.Mutex
	now       func() time.Time
	instances map[string]Instance // by ID
	tokens    map[string]time.Time
	issued    int
}

// New returns a server that holds no instances.
func New() *Server {
	return &Server{
		now:       time.Now,
		instances: make(map[string]Instance),
		tokens:    make(map[string]time.Time),
	}
}

// SetClock replaces the clock that issues and expires tokens (tests advance it to expire
// tokens without waiting). It must not be nil.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Put adds the instance or replaces the one with the same ID. An instance that held the same
// private IP under another ID is removed: EC2 reuses an address only once its owner is gone.
func (s *Server) Put(in Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(in.clone())
}

func (s *Server) putLocked(in Instance) {
	for id, other := range s.instances {
		if id != in.ID && sameIP(other.PrivateIP, in.PrivateIP) {
			delete(s.instances, id)
		}
	}
	s.instances[in.ID] = in
}

// Update changes the instance with the given ID under the server's lock. fn gets a copy; the
// instance keeps its ID whatever fn does to it.
func (s *Server) Update(id string, fn func(*Instance)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("update instance %q: %w", id, ErrNotFound)
	}
	in = in.clone()
	fn(&in)
	in.ID = id
	s.putLocked(in.clone())
	return nil
}

// Get returns a copy of the instance with the given ID.
func (s *Server) Get(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	return in.clone(), ok
}

// ByIP returns a copy of the instance whose private IP is ip.
func (s *Server) ByIP(ip string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byIPLocked(ip)
}

func (s *Server) byIPLocked(ip string) (Instance, bool) {
	for _, in := range s.instances {
		if sameIP(in.PrivateIP, ip) {
			return in.clone(), true
		}
	}
	return Instance{}, false
}

// Remove forgets the instance; its address then gets 404 for every item.
func (s *Server) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.instances, id)
}

// Instances returns copies of all instances, sorted by ID.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.instances))
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		out = append(out, s.instances[id].clone())
	}
	return out
}

// TokensIssued counts the tokens handed out since New.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

func sameIP(a, b string) bool {
	pa, err := netip.ParseAddr(a)
	if err != nil {
		return false
	}
	pb, err := netip.ParseAddr(b)
	if err != nil {
		return false
	}
	return pa.Unmap() == pb.Unmap()
}

// ServeHTTP answers /latest/api/token, /latest/meta-data/... and /latest/dynamic/....
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		s.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plain(w, http.StatusMethodNotAllowed, "")
		return
	}
	s.mu.Lock()
	now := s.now()
	exp, ok := s.tokens[r.Header.Get(TokenHeader)]
	valid := ok && now.Before(exp)
	var in Instance
	var found bool
	if valid {
		in, found = s.byIPLocked(remoteIP(r))
	}
	s.mu.Unlock()
	if !valid {
		plain(w, http.StatusUnauthorized, "")
		return
	}
	if !found {
		plain(w, http.StatusNotFound, "")
		return
	}
	w.Header().Set(TokenTTLHeader, strconv.FormatInt(int64(exp.Sub(now)/time.Second), 10))
	body, ok := item(in, r.URL.Path)
	if !ok {
		plain(w, http.StatusNotFound, "")
		return
	}
	plain(w, http.StatusOK, body)
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		plain(w, http.StatusMethodNotAllowed, "")
		return
	}
	// EC2 refuses a token request that went through a proxy.
	if r.Header.Get("X-Forwarded-For") != "" {
		plain(w, http.StatusForbidden, "")
		return
	}
	ttl, err := strconv.Atoi(strings.TrimSpace(r.Header.Get(TokenTTLHeader)))
	if err != nil || ttl < 1 || time.Duration(ttl)*time.Second > MaxTokenTTL {
		plain(w, http.StatusBadRequest, "")
		return
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])

	s.mu.Lock()
	now := s.now()
	for t, exp := range s.tokens {
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	s.issued++
	s.mu.Unlock()

	w.Header().Set(TokenTTLHeader, strconv.Itoa(ttl))
	plain(w, http.StatusOK, tok)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Server", "EC2ws")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
