package route53_test

import (
	"net"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// TestLostAQueryIsNotANegativeAnswer: the managers' name is asked for A records only (an AAAA
// query beside each would double the resolver's load when thousands of nodes boot), and a
// resolver that loses the A query (a UDP packet dropped under load) while it answers anything
// else with "no data" gives no negative answer: the node asks DNS again and makes no Route 53
// call, even with api_after=0s.
func TestLostAQueryIsNotANegativeAnswer(t *testing.T) {
	e := start(t, unlimited)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	asked := map[uint16]int{}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		for _, q := range req.Question {
			mu.Lock()
			asked[q.Qtype]++
			mu.Unlock()
		}
		if len(req.Question) == 1 && req.Question[0].Qtype == dns.TypeA {
			return // lost
		}
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Authoritative = true
		_ = w.WriteMsg(resp)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	retriesOverDNS(t, e, pc.LocalAddr(), "the A query lost")
	mu.Lock()
	defer mu.Unlock()
	if asked[dns.TypeA] == 0 || len(asked) != 1 {
		t.Fatalf("queries by type %v; want A only", asked)
	}
}
