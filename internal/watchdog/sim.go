package watchdog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The lab's stand-in for a watchdog device (Sim) is a unix socket; one
// connection is one open of the device. Lines, both ways:
//
//	server, on connect: "tandem-lab-watchdog <identity>" (or "busy" and
//	                    the connection closes: one opener at a time, as
//	                    the kernel's EBUSY)
//	"keepalive"         feeds it (no answer; like a write or
//	                    WDIOC_KEEPALIVE)
//	"settimeout N"      WDIOC_SETTIMEOUT, which also feeds it; answer
//	                    "timeout N" or "error <why>"
//	"gettimeout"        WDIOC_GETTIMEOUT; answer "timeout N"
//	"V"                 the magic character: if the connection closes
//	                    right after it, the timer stops
//
// Connecting arms it with SimDefaultTimeout, as open arms a device. A
// close without "V" last leaves the timer running. When it runs out, the
// stand-in fires (the lab powers the node off) and is disarmed, as a
// reset machine's watchdog is until tandemd opens it again.
const (
	simHello          = "tandem-lab-watchdog"
	SimDefaultTimeout = 60 * time.Second // softdog's default soft_margin
	simMaxTimeout     = 3600
	simAnswerWait     = time.Second
)

// simClient is the backend for the stand-in.
type simClient struct {
	conn net.Conn
	rd   *bufio.Reader
	id   string
}

func dialSim(path string) (backend, error) {
	conn, err := net.DialTimeout("unix", path, simAnswerWait)
	if err != nil {
		return nil, fmt.Errorf("while opening the lab watchdog %s: %w", path, err)
	}
	c := &simClient{conn: conn, rd: bufio.NewReader(conn)}
	line, err := c.readLine()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("while opening the lab watchdog %s: %w", path, err)
	}
	switch {
	case line == "busy":
		conn.Close()
		return nil, fmt.Errorf("while opening the lab watchdog %s: another process holds it open (only one may)", path)
	case !strings.HasPrefix(line, simHello+" "):
		conn.Close()
		return nil, fmt.Errorf("%s is a socket but not the lab's watchdog stand-in (it said %q)", path, line)
	}
	c.id = strings.TrimPrefix(line, simHello+" ")
	return c, nil
}

func (c *simClient) readLine() (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(simAnswerWait))
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func (c *simClient) send(line string) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(simAnswerWait))
	_, err := c.conn.Write([]byte(line + "\n"))
	return err
}

func (c *simClient) ask(line string) (int, error) {
	if err := c.send(line); err != nil {
		return 0, err
	}
	ans, err := c.readLine()
	if err != nil {
		return 0, err
	}
	if v, ok := strings.CutPrefix(ans, "timeout "); ok {
		return strconv.Atoi(v)
	}
	return 0, fmt.Errorf("the lab watchdog answers %q", ans)
}

func (c *simClient) identity() string { return c.id }
func (c *simClient) setTimeout(sec int) error {
	got, err := c.ask("settimeout " + strconv.Itoa(sec))
	if err == nil && got != sec {
		err = fmt.Errorf("asked for %ds, the lab watchdog took %ds", sec, got)
	}
	return err
}
func (c *simClient) getTimeout() (int, error) { return c.ask("gettimeout") }
func (c *simClient) keepalive() error         { return c.send("keepalive") }
func (c *simClient) disarm() error {
	err := c.send("V")
	return errors.Join(err, c.conn.Close())
}
func (c *simClient) abandon() error { return c.conn.Close() }

// Sim is the lab's stand-in for a node's watchdog device: it listens on
// Path and calls Fire when it is armed and not fed within its timeout.
type Sim struct {
	Path     string
	Identity string // says which node's it is
	Fire     func()
	Log      *slog.Logger

	mu      sync.Mutex
	open    bool // a connection holds it
	armed   bool
	timeout time.Duration
	timer   *time.Timer
	gen     int // which arming the timer belongs to
	fed     time.Time
}

// Serve listens until ctx ends. A stale socket file at Path is replaced.
func (s *Sim) Serve(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	_ = os.Remove(s.Path)
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("while listening on %s: %w", s.Path, err)
	}
	if err := os.Chmod(s.Path, 0o600); err != nil {
		ln.Close()
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	s.Log.Info("lab watchdog ready", "device", s.Path, "identity", s.Identity)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				_ = os.Remove(s.Path)
				return nil
			}
			return err
		}
		go s.serveConn(conn)
	}
}

// Armed says whether the timer runs.
func (s *Sim) Armed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.armed
}

func (s *Sim) serveConn(conn net.Conn) {
	defer conn.Close()
	s.mu.Lock()
	if s.open {
		s.mu.Unlock()
		_, _ = conn.Write([]byte("busy\n"))
		return
	}
	s.open = true
	if !s.armed {
		s.timeout = SimDefaultTimeout
	}
	s.armLocked()
	s.mu.Unlock()
	s.Log.Warn("lab watchdog opened: armed", "timeout", s.timeout)
	if _, err := conn.Write([]byte(simHello + " " + s.Identity + "\n")); err != nil {
		s.closed(false)
		return
	}
	rd := bufio.NewScanner(conn)
	magic := false
	for rd.Scan() {
		line := rd.Text()
		magic = line == "V"
		cmd, arg, _ := strings.Cut(line, " ")
		var answer string
		s.mu.Lock()
		switch cmd {
		case "keepalive":
			s.armLocked()
		case "settimeout":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > simMaxTimeout {
				answer = fmt.Sprintf("error timeout %q must be 1-%d seconds", arg, simMaxTimeout)
				break
			}
			s.timeout = time.Duration(n) * time.Second
			s.armLocked()
			answer = "timeout " + strconv.Itoa(n)
		case "gettimeout":
			answer = "timeout " + strconv.Itoa(int(s.timeout/time.Second))
		}
		s.mu.Unlock()
		if answer != "" {
			if _, err := conn.Write([]byte(answer + "\n")); err != nil {
				break
			}
		}
	}
	s.closed(magic)
}

// armLocked starts the timer over (a feed).
func (s *Sim) armLocked() {
	s.armed = true
	s.fed = time.Now()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.gen++
	gen := s.gen
	s.timer = time.AfterFunc(s.timeout, func() { s.expire(gen) })
}

func (s *Sim) closed(magic bool) {
	s.mu.Lock()
	s.open = false
	if magic && s.armed {
		s.armed = false
		s.gen++
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
		s.Log.Info("lab watchdog disarmed (magic close)")
		return
	}
	armed, left := s.armed, time.Until(s.fed.Add(s.timeout))
	s.mu.Unlock()
	if armed {
		s.Log.Warn("lab watchdog closed without the magic close: the timer keeps running", "fires_in", left.Round(time.Millisecond))
	}
}

func (s *Sim) expire(gen int) {
	s.mu.Lock()
	if gen != s.gen || !s.armed {
		s.mu.Unlock()
		return
	}
	s.armed = false
	since := time.Since(s.fed)
	s.mu.Unlock()
	s.Log.Error("LAB WATCHDOG FIRED: not fed in time; powering the node off", "timeout", s.timeout, "since_last_feed", since.Round(time.Millisecond))
	if s.Fire != nil {
		s.Fire()
	}
}
