package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
)

// NormalizeEndpoint turns "host", "host:port" or "https://host:port" into
// host:port, with the node API's default port when none is given.
func NormalizeEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no endpoint given: pass --endpoint with a node's address or name, e.g. --endpoint 10.0.0.11")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("endpoint %q is not a valid URL: %v", s, err)
		}
		if u.Scheme != "https" {
			return "", fmt.Errorf("endpoint %q: the node API speaks only https", s)
		}
		if u.Path != "" && u.Path != "/" {
			return "", fmt.Errorf("endpoint %q: give only the scheme, host and port, without a path", s)
		}
		s = u.Host
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port (or a bare IPv6 address): use the default.
		host, port = strings.Trim(s, "[]"), strconv.Itoa(config.DefaultAPIPort)
	}
	if host == "" {
		return "", fmt.Errorf("endpoint %q has no host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("endpoint %q: port must be 1-65535", s)
	}
	return net.JoinHostPort(host, port), nil
}

// trust decides whether to accept a node's certificate. Its methods may be
// called from several goroutines (status asks both nodes at once).
type trust struct {
	cache       *Cache
	trustNew    bool   // --trust-new: pin unknown certificates without asking
	fingerprint string // --fingerprint: the one certificate to accept for an unknown node
	in          io.Reader
	prompt      io.Writer
	interactive bool

	mu sync.Mutex // guards cache.Pins, saving the cache and the terminal
}

// untrustedError says a node's certificate is not pinned yet.
type untrustedError struct{ addr, fp string }

func (e *untrustedError) Error() string {
	return fmt.Sprintf("the certificate of %s is not trusted yet (fingerprint %s): check it against the fingerprint in that node's tandemd log, then run again with --fingerprint %s (or --trust-new in scripts that accept any first certificate)", e.addr, e.fp, e.fp)
}

type changedError struct{ addr, was, now string }

func (e *changedError) Error() string {
	return fmt.Sprintf("the certificate of %s CHANGED (pinned %s, now %s). Someone may be impersonating the node, or it was reinstalled. If you know it was reinstalled, run `tandem trust forget %s` and connect again", e.addr, e.was, e.now, e.addr)
}

// Client talks to one node API, over api.Client.
type Client struct {
	addr      string
	api       *api.Client
	fromCache bool // the pin came from the cache: a mismatch means it CHANGED
}

// Dial connects to a node, checking its certificate against the cache
// (asking to pin it on first contact), and returns a client for it.
func Dial(ctx context.Context, endpoint, token string, t *trust) (*Client, error) {
	return dialWant(ctx, endpoint, token, t, t.fingerprint)
}

// dialWant is Dial with the fingerprint to accept for an unpinned node
// given explicitly: commands that reach two nodes take one per node.
func dialWant(ctx context.Context, endpoint, token string, t *trust, want string) (*Client, error) {
	addr, err := NormalizeEndpoint(endpoint)
	if err != nil {
		return nil, exitf(ExitUsage, "%v", err)
	}
	pinned := t.pinned(addr)
	c := newClient(addr, token, pinned, want, t.rotating(addr)...)
	err = c.handshake(ctx)
	var unk *untrustedError
	if errors.As(err, &unk) {
		t.mu.Lock()
		defer t.mu.Unlock()
		accept := t.trustNew
		if !accept && want == "" && t.interactive {
			accept = t.ask(unk)
		}
		if !accept {
			return nil, &ExitError{Code: ExitRefused, Err: err}
		}
		c.api.Close()
		c = newClient(addr, token, unk.fp, "")
		if err := c.handshake(ctx); err != nil {
			return nil, err
		}
		t.cache.Pins[addr] = unk.fp
		if err := t.cache.Save(); err != nil {
			return nil, err
		}
		fmt.Fprintf(t.prompt, "Pinned %s with certificate %s.\n", addr, unk.fp)
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if pinned == "" && want != "" {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.cache.Pins[addr] = want
		if err := t.cache.Save(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (t *trust) pinned(addr string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cache.Pins[addr]
}

// rotating is the certificate addr's node is rotating to, if any: it is
// accepted besides the pin, so that a node whose rotation a crash
// interrupted is reachable with either.
func (t *trust) rotating(addr string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.cache.Rotating[addr]; n != "" && t.cache.Pins[addr] != "" {
		return []string{n}
	}
	return nil
}

// ask is called with t.mu held.
func (t *trust) ask(e *untrustedError) bool {
	fmt.Fprintf(t.prompt, "The node at %s is not known to this console.\nIts certificate fingerprint is %s.\nCompare it with the fingerprint tandemd logged at start on that node.\nTrust and pin it? [y/N] ", e.addr, e.fp)
	return t.yes()
}

// confirm asks a yes/no question on the terminal; anything but yes is no.
func (t *trust) confirm(question string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.prompt, "%s [y/N] ", question)
	return t.yes()
}

func (t *trust) yes() bool {
	switch strings.ToLower(strings.TrimSpace(readLine(t.in))) {
	case "y", "yes":
		return true
	}
	return false
}

// readLine reads one line a byte at a time, so that nothing after it is
// swallowed by a buffer and lost to the next question.
func readLine(r io.Reader) string {
	var b strings.Builder
	var c [1]byte
	for {
		n, err := r.Read(c[:])
		if n == 1 {
			if c[0] == '\n' {
				break
			}
			b.WriteByte(c[0])
		}
		if err != nil {
			break
		}
	}
	return b.String()
}

// newClient builds a client that accepts exactly the pinned certificate
// (and the one it is rotating to, also), or when none is pinned, exactly
// want (if given), else reports it unknown.
func newClient(addr, token, pinned, want string, also ...string) *Client {
	fp := pinned
	if fp == "" {
		fp = want
	}
	return &Client{addr: addr, fromCache: pinned != "", api: api.NewClient(api.ClientConfig{
		Addr:             addr,
		Token:            token,
		Fingerprint:      fp,
		AlsoAccept:       also,
		DialTimeout:      3 * time.Second,
		HandshakeTimeout: 5 * time.Second,
	})}
}

// handshake opens a TLS connection so trust is settled before any token is
// sent.
func (c *Client) handshake(ctx context.Context) error {
	return c.classify(c.api.Handshake(ctx))
}

// classify turns the api client's errors into the console's: trust
// problems, an unreachable node, or the node's error answer, each with its
// exit status.
func (c *Client) classify(err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return err
	}
	if ae.Err == nil {
		a := &APIError{Addr: c.addr, Status: ae.Status, Code: ae.Code}
		if a.Code != "" {
			a.Message = ae.Message
		}
		return &ExitError{Code: a.exitCode(), Err: a}
	}
	var ce *api.CertError
	if errors.As(ae.Err, &ce) && ce.Presented != "" {
		switch {
		case ce.Pinned == "":
			return &untrustedError{addr: c.addr, fp: ce.Presented}
		case c.fromCache:
			return &ExitError{Code: ExitRefused, Err: &changedError{addr: c.addr, was: ce.Pinned, now: ce.Presented}}
		}
		return &ExitError{Code: ExitRefused, Err: fmt.Errorf("the certificate of %s has fingerprint %s, not the %s you gave: nothing was sent", c.addr, ce.Presented, ce.Pinned)}
	}
	return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("cannot reach the node API at %s: %v", c.addr, ae.Err)}
}

// APIError is an error answer of a node: the HTTP status and the code and
// message of the JSON envelope.
type APIError struct {
	Addr    string
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s answered %d %s", e.Addr, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s refused: %s (%s)", e.Addr, e.Message, e.Code)
}

// exitCode maps a node's error answer to the console's exit status.
func (e *APIError) exitCode() int {
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ExitRefused
	case http.StatusConflict:
		return ExitConflict
	}
	return ExitFailure
}

// Addr is the node API address (host:port) this client talks to.
func (c *Client) Addr() string { return c.addr }

// Get fetches path and decodes the JSON answer into out. Error answers are
// turned into errors carrying the node's message.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// Post sends in as JSON to path and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, in, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.classify(c.api.Do(ctx, method, path, in, out))
}

// notFound reports whether err is a node saying it has no such endpoint
// (an older tandemd).
func notFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// isTerminal asks the terminal driver, not the file mode: /dev/null is a
// character device too, and a console run from cron or systemd with stdin
// on /dev/null must not be treated as one that can answer a prompt.
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
