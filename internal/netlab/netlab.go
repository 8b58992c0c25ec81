// Package netlab builds small networks out of the Linux kernel's own parts,
// to run real vtrain processes on them: one network namespace per host,
// veth pairs into a bridge that plays the internet, NAT routers that
// masquerade with nftables, rate limits by tc's tbf, random loss by
// nftables' numgen, partitions by nftables drops between hosts, and
// latency by netem where the kernel has it, otherwise by a user-space hop
// (delay.go) that holds each packet a host sends.
//
// A Lab uses only addresses inside the namespaces it creates: none of them
// is linked to the namespace the tests run in, so nothing leaves the lab.
// Its internet is 11.44.0.0/16, a range libp2p counts as public (it skips
// AutoNAT, relay reservations and hole punching on private, loopback and
// documentation ranges), and each NAT's inside 192.168.N.0/24.
//
// A Lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nft
// (apt-get install nftables); Check says what is missing. Close removes
// everything it made; so does an interrupt (SIGINT, SIGTERM) of the process
// that made it, and a new Lab removes what a killed one left (namespaces
// with the package's prefix whose process is gone).
package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace a Lab creates; the process ID
// of its creator follows (see Clean).
const Prefix = "vtnl"

// Internet is the lab's public network; NAT i's inside is 192.168.i.0/24.
const (
	internetPrefix = "11.44.0."
	internetBits   = 16
)

// Check reports what this machine lacks to build a Lab, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab: needs root (network namespaces, veth, nftables, tc)")
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("netlab: %s not installed (apt-get install iproute2 nftables)", tool)
		}
	}
	name := fmt.Sprintf("%s%dprobe", Prefix, os.Getpid())
	if err := run("ip", "netns", "add", name); err != nil {
		return fmt.Errorf("netlab: cannot create a network namespace: %w", err)
	}
	defer run("ip", "netns", "del", name)
	if err := run("ip", "netns", "exec", name, "nft", "add", "table", "inet", "probe"); err != nil {
		return fmt.Errorf("netlab: nftables does not work in a namespace: %w", err)
	}
	return nil
}

// Netem reports whether the kernel has the netem qdisc (latency and jitter
// in the kernel). Without it a Lab delays packets in user space.
func Netem() bool {
	name := fmt.Sprintf("%s%dnetem", Prefix, os.Getpid())
	if run("ip", "netns", "add", name) != nil {
		return false
	}
	defer run("ip", "netns", "del", name)
	return run("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms") == nil
}

// Lab is a network of namespaces. Its methods are safe for concurrent use.
type Lab struct {
	mu      sync.Mutex
	id      string // Prefix + pid + a counter: namespaces are id + "-" + name
	inet    string // the internet namespace (the bridge)
	next    int    // next internet host number
	nats    int
	hosts   map[string]*Host
	nss     []string // every namespace made, in order
	procs   []*Proc
	hops    []*delayHop
	closed  bool
	stopSig chan struct{}
	log     io.Writer
}

var labs struct {
	sync.Mutex
	n int
}

// New cleans what killed labs left behind and makes an empty lab: an
// internet (a bridge in its own namespace) that hosts and NATs attach to.
// Progress goes to log (nil: nowhere).
func New(log io.Writer) (*Lab, error) {
	if log == nil {
		log = io.Discard
	}
	Clean(log)
	labs.Lock()
	labs.n++
	n := labs.n
	labs.Unlock()
	l := &Lab{id: fmt.Sprintf("%s%d_%d", Prefix, os.Getpid(), n), hosts: map[string]*Host{}, log: log, stopSig: make(chan struct{})}
	l.trapSignals()
	var err error
	l.mu.Lock()
	l.inet, err = l.netns("inet")
	l.mu.Unlock()
	if err != nil {
		l.Close()
		return nil, err
	}
	if err := l.in(l.inet, "ip", "link", "add", "br0", "type", "bridge"); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.in(l.inet, "ip", "link", "set", "br0", "up"); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// trapSignals removes the lab when the process is interrupted, then lets
// the signal end the process as it would have.
func (l *Lab) trapSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		defer signal.Stop(ch)
		select {
		case s := <-ch:
			fmt.Fprintf(l.log, "netlab: %v: removing the lab\n", s)
			l.Close()
			signal.Stop(ch)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				p.Signal(s)
			}
		case <-l.stopSig:
		}
	}()
}

// Clean removes the namespaces (and ends the processes in them) of labs
// whose process is gone: what a killed test left behind.
func Clean(log io.Writer) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		digits := strings.TrimPrefix(name, Prefix)
		end := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' })
		if end <= 0 {
			continue
		}
		pid, _ := strconv.Atoi(digits[:end])
		if pid == os.Getpid() || processAlive(pid) {
			continue
		}
		fmt.Fprintf(log, "netlab: removing stale namespace %s\n", name)
		killIn(name)
		run("ip", "netns", "del", name)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// killIn ends the processes running in namespace name: only labs' own
// namespaces are passed here, whose processes labs started.
func killIn(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (l *Lab) netns(name string) (string, error) {
	if l.closed {
		return "", errors.New("netlab: lab closed")
	}
	ns := l.id + "-" + name
	if err := run("ip", "netns", "add", ns); err != nil {
		return "", err
	}
	l.nss = append(l.nss, ns)
	if err := l.in(ns, "ip", "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return ns, nil
}

// in runs a command inside namespace ns.
func (l *Lab) in(ns string, args ...string) error {
	return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// nft loads an nftables ruleset into namespace ns.
func (l *Lab) nft(ns, ruleset string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: nft in %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Host is a machine of the lab: a namespace with one interface, eth0.
type Host struct {
	lab  *Lab
	Name string
	NS   string // its namespace
	IP   string // its address (private behind a NAT)
	// Public is the address others see it from: its own, or its NAT's.
	Public string
	NAT    *NAT // nil on the internet
	dev    string
	port   string // a public host's end of its link in the internet's namespace
}

// NATKind says how a NAT maps its inside to its outside.
type NATKind int

const (
	// Cone keeps an inside socket's port outside where it can (nftables'
	// plain masquerade): endpoint-independent mapping, what most home
	// routers do, and what hole punching needs.
	Cone NATKind = iota
	// Symmetric draws a new outside port for each outside destination
	// (masquerade fully-random): hole punching between two NATs fails,
	// and such peers need a relay.
	Symmetric
)

func (k NATKind) String() string {
	if k == Symmetric {
		return "symmetric"
	}
	return "cone"
}

// NAT is a router between the internet and a private network: it
// masquerades what goes out and drops what comes in unasked.
type NAT struct {
	lab   *Lab
	Name  string
	Kind  NATKind
	NS    string
	WAN   string // its internet address
	index int    // 192.168.index.0/24 inside
	hosts int
}

// attach links namespace ns to the internet with an address of its own.
func (l *Lab) attach(ns, dev string) (string, error) {
	l.next++
	if l.next > 250 {
		return "", errors.New("netlab: the internet is full")
	}
	ip := fmt.Sprintf("%s%d", internetPrefix, l.next)
	port := fmt.Sprintf("p%d", l.next)
	if err := run("ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", l.inet); err != nil {
		return "", err
	}
	for _, c := range [][]string{
		{l.inet, "ip", "link", "set", port, "master", "br0", "up"},
		{ns, "ip", "addr", "add", fmt.Sprintf("%s/%d", ip, internetBits), "dev", dev},
		{ns, "ip", "link", "set", dev, "up"},
	} {
		if err := l.in(c[0], c[1:]...); err != nil {
			return "", err
		}
	}
	return ip, nil
}

// Public adds a host with a public address.
func (l *Lab) Public(name string) (*Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hosts[name] != nil {
		return nil, fmt.Errorf("netlab: host %q exists", name)
	}
	ns, err := l.netns(name)
	if err != nil {
		return nil, err
	}
	ip, err := l.attach(ns, "eth0")
	if err != nil {
		return nil, err
	}
	h := &Host{lab: l, Name: name, NS: ns, IP: ip, Public: ip, dev: "eth0", port: fmt.Sprintf("p%d", l.next)}
	l.hosts[name] = h
	fmt.Fprintf(l.log, "netlab: host %s at %s\n", name, ip)
	return h, nil
}

// NAT adds a NAT router on the internet.
func (l *Lab) NAT(name string, kind NATKind) (*NAT, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns, err := l.netns(name)
	if err != nil {
		return nil, err
	}
	wan, err := l.attach(ns, "wan")
	if err != nil {
		return nil, err
	}
	l.nats++
	n := &NAT{lab: l, Name: name, Kind: kind, NS: ns, WAN: wan, index: l.nats}
	if err := l.in(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	masq := "masquerade"
	if kind == Symmetric {
		masq = "masquerade fully-random"
	}
	// Unasked packets from outside are dropped, not refused: a refusal
	// (RST, ICMP) would kill the other side's half of a simultaneous open.
	if err := l.nft(ns, `
table ip vtnat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan" `+masq+`; }
}
table inet vtfw {
	chain input { type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept; iifname "wan" drop; }
	chain forward { type filter hook forward priority filter; policy accept;
		iifname "wan" ct state established,related accept; iifname "wan" drop; }
}`); err != nil {
		return nil, err
	}
	fmt.Fprintf(l.log, "netlab: NAT %s (%v) at %s, inside 192.168.%d.0/24\n", name, kind, wan, n.index)
	return n, nil
}

// Host adds a host behind the NAT, with a private address only.
func (n *NAT) Host(name string) (*Host, error) {
	l := n.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hosts[name] != nil {
		return nil, fmt.Errorf("netlab: host %q exists", name)
	}
	ns, err := l.netns(name)
	if err != nil {
		return nil, err
	}
	n.hosts++
	lan := fmt.Sprintf("lan%d", n.hosts)
	gw := fmt.Sprintf("192.168.%d.1", n.index)
	ip := fmt.Sprintf("192.168.%d.%d", n.index, n.hosts+1)
	if err := run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", lan, "netns", n.NS); err != nil {
		return nil, err
	}
	cmds := [][]string{
		{ns, "ip", "addr", "add", ip + "/24", "dev", "eth0"},
		{ns, "ip", "link", "set", "eth0", "up"},
		{ns, "ip", "route", "add", "default", "via", gw},
		{n.NS, "ip", "link", "set", lan, "up"},
	}
	if n.hosts == 1 {
		cmds = append(cmds, []string{n.NS, "ip", "addr", "add", gw + "/24", "dev", lan})
	} else {
		// A second host of the NAT: its link joins the first's subnet.
		cmds = append(cmds, []string{n.NS, "ip", "route", "add", ip + "/32", "dev", lan})
	}
	for _, c := range cmds {
		if err := l.in(c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	h := &Host{lab: l, Name: name, NS: ns, IP: ip, Public: n.WAN, NAT: n, dev: "eth0"}
	l.hosts[name] = h
	fmt.Fprintf(l.log, "netlab: host %s at %s behind NAT %s\n", name, ip, n.Name)
	return h, nil
}

// Shape limits what the host sends: rate (tc's syntax, "1mbit"; "" for
// none) by a token bucket, and loss, a share of its packets dropped at
// random (0 for none) as they leave eth0 (at postrouting, so that packets
// that went through the delay hop are counted once, on their way out).
func (h *Host) Shape(rate string, loss float64) error {
	if rate != "" {
		if err := h.lab.in(h.NS, "tc", "qdisc", "replace", "dev", h.dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"); err != nil {
			return err
		}
	}
	if loss > 0 {
		if loss >= 1 {
			return fmt.Errorf("netlab: loss %v: a share below 1", loss)
		}
		perMillion := int(loss * 1e6)
		return h.lab.nft(h.NS, fmt.Sprintf(`
table inet vtloss {
	chain out { type filter hook postrouting priority filter; oifname %q numgen random mod 1000000 < %d drop; }
}`, h.dev, perMillion))
	}
	return nil
}

// ShapeIn limits what a public host receives to rate (tc's syntax), by a
// token bucket on the internet's end of its link: with Shape, a slow link
// both ways.
func (h *Host) ShapeIn(rate string) error {
	if h.port == "" {
		return fmt.Errorf("netlab: %s is behind a NAT: shape its NAT's link", h.Name)
	}
	return h.lab.in(h.lab.inet, "tc", "qdisc", "replace", "dev", h.port, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
}

// Partition cuts every host in side off every host of the lab not in it,
// both ways, until the returned heal is called.
func (l *Lab) Partition(side ...*Host) (heal func() error, err error) {
	l.mu.Lock()
	var other []*Host
	for _, h := range l.hosts {
		if !slices.Contains(side, h) {
			other = append(other, h)
		}
	}
	l.mu.Unlock()
	addrs := func(hs []*Host) string {
		var s []string
		for _, h := range hs {
			if !slices.Contains(s, h.Public) {
				s = append(s, h.Public)
			}
		}
		return strings.Join(s, ", ")
	}
	cut := func(hs, from []*Host) error {
		if len(from) == 0 {
			return nil
		}
		set := addrs(from)
		for _, h := range hs {
			if err := l.nft(h.NS, fmt.Sprintf(`
table inet vtpart {
	chain in { type filter hook input priority filter; ip saddr { %s } drop; }
	chain out { type filter hook output priority filter; ip daddr { %s } drop; }
}`, set, set)); err != nil {
				return err
			}
		}
		return nil
	}
	heal = func() error {
		var first error
		for _, h := range append(slices.Clone(side), other...) {
			if err := l.in(h.NS, "nft", "delete", "table", "inet", "vtpart"); err != nil && first == nil && !strings.Contains(err.Error(), "No such file") {
				first = err
			}
		}
		return first
	}
	for _, h := range side {
		if h.NAT != nil {
			return nil, fmt.Errorf("netlab: partition of %s: hosts behind a NAT are cut at their NAT's address, which its other hosts share; use public hosts", h.Name)
		}
	}
	if err := cut(side, other); err != nil {
		heal()
		return nil, err
	}
	if err := cut(other, side); err != nil {
		heal()
		return nil, err
	}
	fmt.Fprintf(l.log, "netlab: partition: %s | %s\n", addrs(side), addrs(other))
	return heal, nil
}

// Close ends the lab's processes and removes its namespaces. It is safe to
// call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stopSig)
	procs, hops, nss := l.procs, l.hops, l.nss
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(5 * time.Second) })
	}
	wg.Wait()
	for _, d := range hops {
		d.close()
	}
	var first error
	for _, ns := range slices.Backward(nss) {
		killIn(ns)
		if err := run("ip", "netns", "del", ns); err != nil && first == nil {
			first = err
		}
	}
	return first
}
