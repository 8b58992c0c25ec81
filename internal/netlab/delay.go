package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Delay makes every packet the host sends wait delay ± jitter (uniform)
// before it leaves: one-way latency on all its links, so that a link
// between two delayed hosts has a round trip of about 2 × 2 × delay.
//
// With netem in the kernel (Netem) this is netem's delay on the host's
// interface. Without it (these machines), a user-space hop does it: the
// host's own packets are routed into a TUN device the lab reads, held,
// and written back into the kernel, which forwards them out of eth0 as
// before. Packets keep their order (a held packet never overtakes an
// earlier one: the jitter moves packets, it does not reorder them, unlike
// netem's). The returned string says which ran: "netem" or "user-space
// hop".
func (h *Host) Delay(delay, jitter time.Duration, seed uint64) (string, error) {
	if delay < 0 || jitter < 0 || jitter > delay {
		return "", fmt.Errorf("netlab: delay %v ± %v: want 0 ≤ jitter ≤ delay", delay, jitter)
	}
	l := h.lab
	if Netem() {
		err := l.in(h.NS, "tc", "qdisc", "replace", "dev", h.dev, "root", "netem", "delay",
			fmt.Sprintf("%dus", delay.Microseconds()), fmt.Sprintf("%dus", jitter.Microseconds()))
		return "netem", err
	}
	d, err := newDelayHop(h, delay, jitter, seed)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	l.hops = append(l.hops, d)
	l.mu.Unlock()
	return "user-space hop", nil
}

// delayHop is the user-space hop of one host.
type delayHop struct {
	tun           *os.File
	delay, jitter time.Duration
	rng           *rand.Rand
	queue         chan held
	stop          chan struct{}
	once          sync.Once
	wg            sync.WaitGroup
}

type held struct {
	pkt []byte
	at  time.Time
}

const tunName = "dly0"

func newDelayHop(h *Host, delay, jitter time.Duration, seed uint64) (*delayHop, error) {
	tun, err := openTUN(h.NS, tunName)
	if err != nil {
		return nil, err
	}
	l := h.lab
	src := h.IP
	// Locally made packets (iif lo) go to the TUN device; what the hop
	// writes back arrives on dly0 and takes the main table out of eth0. The
	// kernel would drop a packet that arrives with one of its own addresses
	// as source (martian) without accept_local, or a reverse-path check.
	for _, c := range [][]string{
		{"ip", "link", "set", tunName, "up"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + tunName + ".rp_filter=0"},
		{"sysctl", "-qw", "net.ipv4.conf." + tunName + ".accept_local=1"},
		{"ip", "route", "add", "default", "dev", tunName, "src", src, "table", "100"},
		{"ip", "rule", "add", "iif", "lo", "lookup", "100", "pref", "100"},
	} {
		if err := l.in(h.NS, c...); err != nil {
			tun.Close()
			return nil, err
		}
	}
	d := &delayHop{tun: tun, delay: delay, jitter: jitter, rng: rand.New(rand.NewPCG(seed, 0x6e65746c6162)),
		queue: make(chan held, 1<<14), stop: make(chan struct{})}
	d.wg.Add(2)
	go d.read()
	go d.write()
	return d, nil
}

// openTUN creates a TUN device in namespace ns from a thread that enters
// it and then dies with its goroutine (a thread that changed namespace is
// not returned to Go's pool).
func openTUN(ns, name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		nsfd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("netlab: namespace %s: %w", ns, err)}
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("netlab: entering %s: %w", ns, err)}
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("netlab: /dev/net/tun: %w", err)}
			return
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err == nil {
			err = unix.SetNonblock(fd, true)
		}
		if err != nil {
			unix.Close(fd)
			ch <- result{err: fmt.Errorf("netlab: TUN device in %s: %w", ns, err)}
			return
		}
		ch <- result{f: os.NewFile(uintptr(fd), name)}
	}()
	r := <-ch
	return r.f, r.err
}

func (d *delayHop) read() {
	defer d.wg.Done()
	var last time.Time
	buf := make([]byte, 1<<16)
	for {
		n, err := d.tun.Read(buf)
		if err != nil {
			return
		}
		at := time.Now().Add(d.delay)
		if d.jitter > 0 {
			at = at.Add(time.Duration((d.rng.Float64()*2 - 1) * float64(d.jitter)))
		}
		if at.Before(last) {
			at = last // no overtaking
		}
		last = at
		select {
		case d.queue <- held{pkt: append([]byte(nil), buf[:n]...), at: at}:
		case <-d.stop:
			return
		default:
			// A full queue drops, as a router's would.
		}
	}
}

func (d *delayHop) write() {
	defer d.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		var p held
		select {
		case p = <-d.queue:
		case <-d.stop:
			return
		}
		if wait := time.Until(p.at); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-d.stop:
				return
			}
		}
		if _, err := d.tun.Write(p.pkt); err != nil && errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

func (d *delayHop) close() {
	d.once.Do(func() {
		close(d.stop)
		d.tun.Close()
		d.wg.Wait()
	})
}

// Do runs f on a thread inside the host's namespace, so that the sockets f
// opens belong to the host (they stay there once f returns: a listener or
// a connection may then be used from any goroutine).
func (h *Host) Do(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		nsfd, err := unix.Open("/var/run/netns/"+h.NS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- fmt.Errorf("netlab: namespace %s: %w", h.NS, err)
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("netlab: entering %s: %w", h.NS, err)
			return
		}
		ch <- f()
	}()
	return <-ch
}
