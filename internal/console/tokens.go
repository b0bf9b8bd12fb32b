package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

const tokensFile = "tokens.json"

// Tokens are the nodes' admin tokens the operator gave at assembly, kept
// beside the cache in tokens.json (mode 0600, written atomically) so that
// later commands need no token flags. They are apart from cache.json so
// that the cache can be shown, copied or attached to a bug report safely.
type Tokens struct {
	// ByAddress maps a node API address (host:port, as in the cache) to
	// that node's admin token.
	ByAddress map[string]string `json:"tokens"`

	path string
}

// LoadTokens reads tokens.json, returning an empty set when none exists.
func LoadTokens() (*Tokens, error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	t := &Tokens{ByAddress: map[string]string{}, path: filepath.Join(dir, tokensFile)}
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while reading the console's tokens: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("while reading the console's tokens: %w", err)
	}
	if err := checkTokenFile(t.path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("while reading the console's tokens: %w", err)
	}
	if err := json.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("the console's token file %s is damaged (%v): move it away and pass the tokens again", t.path, err)
	}
	if t.ByAddress == nil {
		t.ByAddress = map[string]string{}
	}
	return t, nil
}

// Save writes tokens.json atomically, mode 0600.
func (t *Tokens) Save() error {
	if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
		return fmt.Errorf("while creating the console cache directory: %w", err)
	}
	if err := checkPrivateDir(filepath.Dir(t.path)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(t.path, append(b, '\n'), 0o600)
}

// keptToken is the token the console kept for an address.
type keptToken struct {
	token string
	// under is set when the token was kept under another spelling of the
	// same node (its name where the operator now gives its IP, or the
	// reverse); pin is the certificate pinned there, which the node must
	// present before the token is sent.
	under, pin string
}

// lookup finds the token kept for a node API address (host:port). Tokens
// are kept under the address the operator gave at assembly; an address
// not kept as such is matched, on the same port, against each cached
// node's IP, name and address. A node whose address has no pin, or whose
// pin differs from one already held for addr, is not a match: its token
// goes only to its own certificate. With several matches, the most
// recently updated cluster's node wins.
func (t *Tokens) lookup(c *Cache, addr string) keptToken {
	if tok := t.ByAddress[addr]; tok != "" {
		return keptToken{token: tok}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || c == nil {
		return keptToken{}
	}
	want := hostKey(host)
	var best keptToken
	var bestAt time.Time
	for _, name := range c.ClusterNames() {
		cc := c.Clusters[name]
		for _, n := range cc.Nodes {
			h, p, err := net.SplitHostPort(n.Address)
			tok, pin := t.ByAddress[n.Address], c.Pins[n.Address]
			switch {
			case err != nil || p != port || tok == "" || pin == "":
				continue
			case want != hostKey(h) && want != hostKey(n.IP) && want != hostKey(n.Name):
				continue
			case c.Pins[addr] != "" && c.Pins[addr] != pin:
				continue
			}
			if best.token == "" || cc.UpdatedAt.After(bestAt) {
				best, bestAt = keptToken{token: tok, under: n.Address, pin: pin}, cc.UpdatedAt
			}
		}
	}
	return best
}

// hostKey is a host as lookup compares it: an IP address in its canonical
// form, a name in lower case without a trailing dot.
func hostKey(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
