package netlab

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vtrain/vtrain/internal/testenv"
)

// lab makes a lab for t, or skips t where the machine cannot: without
// root or namespaces a skip (not a dependency CI can install), without
// nft or tc a testenv.Require (CI installs nftables).
func lab(t *testing.T) *Lab {
	t.Helper()
	for _, tool := range []string{"nft", "tc", "ip"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, err == nil, "netlab: %s not installed (apt-get install nftables iproute2)", tool)
	}
	if err := Check(); err != nil {
		t.Skipf("%v: the namespace tests need root and a kernel with network namespaces, veth and nftables", err)
	}
	l, err := New(testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// listen opens a TCP echo server on the host (port 5000) and returns the
// remote addresses of the connections it accepts.
func listen(t *testing.T, h *Host) <-chan string {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) { ln, err = net.Listen("tcp4", h.IP+":5000"); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().String()
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return seen
}

// dial connects from host h to addr within timeout, sends a byte and
// waits for its echo; it returns how long that round trip took.
func dial(h *Host, addr string, timeout time.Duration) (time.Duration, error) {
	var rtt time.Duration
	err := h.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		start := time.Now()
		if _, err := c.Write([]byte{1}); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return err
		}
		rtt = time.Since(start)
		return nil
	})
	return rtt, err
}

// TestLab builds two public hosts and one behind a NAT and checks what the
// kernel then does: the NATed host reaches the internet from its NAT's
// address, nobody reaches it unasked, a partition cuts both ways and heals,
// and the user-space delay hop (or netem) delays.
func TestLab(t *testing.T) {
	l := lab(t)
	a, err := l.Public("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Public("b")
	if err != nil {
		t.Fatal(err)
	}
	nat, err := l.NAT("nat1", Cone)
	if err != nil {
		t.Fatal(err)
	}
	n, err := nat.Host("n")
	if err != nil {
		t.Fatal(err)
	}
	seenA := listen(t, a)
	listen(t, n)
	if _, err := dial(b, a.IP+":5000", 2*time.Second); err != nil {
		t.Fatalf("public to public: %v", err)
	}
	<-seenA
	if _, err := dial(n, a.IP+":5000", 2*time.Second); err != nil {
		t.Fatalf("from behind the NAT: %v", err)
	}
	if from := <-seenA; !strings.HasPrefix(from, nat.WAN+":") {
		t.Errorf("a saw the NATed host's connection from %s, want its NAT's address %s", from, nat.WAN)
	}
	if _, err := dial(a, n.IP+":5000", 500*time.Millisecond); err == nil {
		t.Errorf("a reached the NATed host's private address")
	}
	if _, err := dial(a, nat.WAN+":5000", 500*time.Millisecond); err == nil {
		t.Errorf("a reached the NATed host through its NAT unasked")
	}

	heal, err := l.Partition(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(b, a.IP+":5000", 500*time.Millisecond); err == nil {
		t.Errorf("b reached a across the partition")
	}
	if _, err := dial(a, b.IP+":5000", 500*time.Millisecond); err == nil {
		t.Errorf("a reached b across the partition")
	}
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(b, a.IP+":5000", 2*time.Second); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	<-seenA

	// The hop holds every packet a sends for 40 ms: a's echo of b's byte
	// (and its SYN-ACK) cannot come back sooner.
	how, err := a.Delay(40*time.Millisecond, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("latency by %s", how)
	rtt, err := dial(b, a.IP+":5000", 5*time.Second)
	if err != nil {
		t.Fatalf("through the delay hop: %v", err)
	}
	if rtt < 40*time.Millisecond {
		t.Errorf("round trip %v through a 40 ms hop", rtt)
	}
	if err := a.Shape("10mbit", 0.01); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(n, a.IP+":5000", 5*time.Second); err != nil {
		t.Fatalf("through the shaped, delayed link: %v", err)
	}
}

// TestClean: a lab's namespaces are gone after Close, and Clean removes
// those of a process that no longer exists.
func TestClean(t *testing.T) {
	l := lab(t)
	if _, err := l.Public("x"); err != nil {
		t.Fatal(err)
	}
	stale := Prefix + "999999999_1-y" // no such process
	if err := run("ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	Clean(io.Discard)
	if _, err := os.Stat("/var/run/netns/" + stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Clean left %s: %v", stale, err)
	}
	l.Close()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.id) {
		t.Errorf("namespaces left after Close: %s", out)
	}
}
