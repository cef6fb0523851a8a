// Package dnsfake answers DNS queries for Route 53 private hosted zones the way Route 53 does,
// applying failover, multivalue and weighted routing to the record sets a Source holds.
package dnsfake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Zone is a hosted zone: its ID and its domain name (with or without the final dot).
type Zone struct {
	ID   string
	Name string
}

// RecordSet is a Route 53 resource record set. Values are in presentation format as the
// Route 53 API holds them (an A address, `"quoted"` TXT strings, `10 5 2377 host.` for SRV).
type RecordSet struct {
	Name          string
	Type          string
	TTL           int64
	Values        []string
	SetIdentifier string
	Failover      string // PRIMARY or SECONDARY
	MultiValue    bool
	Weight        *int64
	HealthCheckID string
}

// Source gives the zones and their record sets. The server asks it on every query, so a
// change shows in the next answer; the Source may cache.
type Source interface {
	Zones(ctx context.Context) ([]Zone, error)
	RecordSets(ctx context.Context, zoneID string) ([]RecordSet, error)
}

// Options tune a Server. The zero value is usable.
type Options struct {
	// Healthy reports a health check's status; nil means every check is healthy. A record set
	// without a health check is always healthy.
	Healthy func(healthCheckID string) bool
	// Log receives answers at debug level and source failures at warn level.
	Log zerolog.Logger
	// SOATTL and SOAMinimum, when not zero, override the TTL and the MINIMUM field of every
	// zone's SOA. Without them the zone's own SOA record set is used, or when the zone has none
	// Route 53's default (TTL 900, MINIMUM 86400). Negative answers carry the SOA with the
	// smaller of the two as its TTL (RFC 2308), which is how long resolvers cache them.
	SOATTL     uint32
	SOAMinimum uint32
	// QueryTimeout bounds each call to the Source (default 5 s).
	QueryTimeout time.Duration
}

// Route 53's defaults for a zone without an SOA or NS record set in the Source.
const (
	defaultSOA     = "ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"
	defaultSOATTL  = 900
	defaultNS      = "ns-1536.awsdns-00.co.uk."
	defaultNSTTL   = 172800
	maxMultiValue  = 8 // Route 53 answers at most eight multivalue sets
	maxCNAMEChain  = 8 // in-zone CNAME hops followed in one answer
	defaultTimeout = 5 * time.Second
)

// Server answers DNS over UDP and TCP on one address.
type Server struct {
	addr   string
	src    Source
	opts   Options
	udp    *dns.Server
	tcp    *dns.Server
	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup
	once   sync.Once
}

// Start listens on addr over UDP and TCP (the same port for both, also when addr asks for
// port 0) and serves until Close.
func Start(addr string, src Source, opts Options) (*Server, error) {
	if src == nil {
		return nil, errors.New("start dns server: nil source")
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = defaultTimeout
	}
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return nil, fmt.Errorf("start dns server on %s: %w", addr, err)
	}
	s := &Server{addr: pc.LocalAddr().String(), src: src, opts: opts}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h := dns.HandlerFunc(s.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: notify,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	failed := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		})
	}
	for range 2 {
		select {
		case <-started:
		case err := <-failed:
			s.Close()
			return nil, fmt.Errorf("start dns server on %s: %w", addr, err)
		}
	}
	return s, nil
}

// listenBoth opens UDP and TCP on the same port. For port 0 the kernel picks the UDP port,
// which may be taken for TCP; then it tries again.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		if u, ok := pc.(*net.UDPConn); ok {
			// A thousand agents of one test bed ask at the same instant; on EC2 each asks
			// the resolver of its own interface. The default buffer (about 200 queries)
			// would drop the rest. As root the buffer may pass net.core.rmem_max.
			setReadBuffer(u, 8<<20)
		}
		_, got, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// Addr is the host:port both listeners use.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners, waits for queries in flight and for the server's goroutines.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(shutdown(ctx, s.udp), shutdown(ctx, s.tcp))
		s.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("close dns server %s: %w", s.addr, err)
	}
	return nil
}

func shutdown(ctx context.Context, srv *dns.Server) error {
	err := srv.ShutdownContext(ctx)
	if err != nil && strings.Contains(err.Error(), "server not started") {
		// It failed to start; close what it was given.
		if srv.PacketConn != nil {
			srv.PacketConn.Close()
		}
		if srv.Listener != nil {
			srv.Listener.Close()
		}
		return nil
	}
	return err
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.QueryTimeout)
	defer cancel()
	resp := answer(ctx, s.src, s.opts, req)

	udp := false
	if _, ok := w.LocalAddr().(*net.UDPAddr); ok {
		udp = true
	}
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(uint16(min(size, 4096)), false)
	}
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil {
		s.opts.Log.Debug().Err(err).Str("addr", w.RemoteAddr().String()).Msg("write dns answer")
	}
}

// answer builds the response to one query.
func answer(ctx context.Context, src Source, opts Options, req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = false
	if req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	}
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		return resp
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		resp.SetRcode(req, dns.RcodeRefused)
		return resp
	}
	log := opts.Log.With().Str("record_name", q.Name).Str("record_type", dns.TypeToString[q.Qtype]).Logger()

	zones, err := src.Zones(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("list zones for dns answer")
		resp.SetRcode(req, dns.RcodeServerFailure)
		return resp
	}
	zone, ok := findZone(zones, q.Name)
	if !ok {
		resp.SetRcode(req, dns.RcodeRefused)
		return resp
	}
	sets, err := src.RecordSets(ctx, zone.ID)
	if err != nil {
		log.Warn().Err(err).Str("zone_id", zone.ID).Msg("list record sets for dns answer")
		resp.SetRcode(req, dns.RcodeServerFailure)
		return resp
	}
	z, err := buildZone(zone, sets, opts)
	if err != nil {
		log.Warn().Err(err).Str("zone_id", zone.ID).Msg("read zone for dns answer")
		resp.SetRcode(req, dns.RcodeServerFailure)
		return resp
	}
	resp.Authoritative = true
	if err := z.resolve(resp, q.Name, q.Qtype); err != nil {
		log.Warn().Err(err).Str("zone_id", zone.ID).Msg("build dns answer")
		resp.Answer, resp.Ns = nil, nil
		resp.SetRcode(req, dns.RcodeServerFailure)
		return resp
	}
	log.Debug().Str("zone_id", zone.ID).Str("rcode", dns.RcodeToString[resp.Rcode]).
		Int("answers", len(resp.Answer)).Msg("dns answer")
	return resp
}

// findZone picks the zone with the longest name that contains name.
func findZone(zones []Zone, name string) (Zone, bool) {
	name = dns.CanonicalName(name)
	best, bestLabels := Zone{}, -1
	for _, z := range zones {
		zn := dns.CanonicalName(z.Name)
		if !dns.IsSubDomain(zn, name) {
			continue
		}
		if n := dns.CountLabel(zn); n > bestLabels {
			best, bestLabels = z, n
		}
	}
	return best, bestLabels >= 0
}

// setReadBuffer sets a UDP socket's receive buffer to n bytes: SO_RCVBUFFORCE (allowed to root,
// not capped by net.core.rmem_max), else SO_RCVBUF (capped).
func setReadBuffer(u *net.UDPConn, n int) {
	forced := false
	if rc, err := u.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			forced = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n) == nil
		})
	}
	if !forced {
		_ = u.SetReadBuffer(n)
	}
}
