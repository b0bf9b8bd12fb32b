package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// Cache is the console's local record, kept as JSON (mode 0600, written
// atomically) under os.UserCacheDir()/tandem/ — %LocalAppData% on Windows.
// It holds pinned node certificates and the clusters this console
// assembled; tokens never go in it (they live in tokens.json, see Tokens).
type Cache struct {
	// Pins maps a node API address (host:port) to the certificate
	// fingerprint first seen and accepted there, as ssh's known_hosts does.
	Pins map[string]string `json:"pins"`
	// Rotating maps an address to the certificate its node is rotating
	// to (`tandem rotate-cert`), accepted besides its pin until the node
	// is seen presenting it; then it replaces the pin.
	Rotating map[string]string `json:"rotating,omitempty"`
	// Clusters maps a cluster's name to what the console last knew of it.
	Clusters map[string]CachedCluster `json:"clusters,omitempty"`

	path string
}

// CachedCluster is the console's record of one cluster: enough to reach
// both nodes, and to say what they were, when neither answers.
type CachedCluster struct {
	ClusterIP   string       `json:"cluster_ip"` // IP/prefix
	DNSName     string       `json:"dns_name"`
	Replication string       `json:"replication"`
	Term        int64        `json:"term"`    // the highest term seen
	Primary     string       `json:"primary"` // as of Term
	Nodes       []CachedNode `json:"nodes"`
	// Witness is the API address of the quorum witness in automatic
	// failover mode ("" in manual mode): a disassembly has it leave.
	Witness     string    `json:"witness,omitempty"`
	AssembledAt time.Time `json:"assembled_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// CachedNode is one node of a cached cluster.
type CachedNode struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// Address is the node API's host:port as the operator gave it at
	// assembly: the key of its pin and of its token.
	Address  string    `json:"address"`
	Role     string    `json:"role"` // last known
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// ClusterNames lists the cached clusters in order.
func (c *Cache) ClusterNames() []string {
	out := make([]string, 0, len(c.Clusters))
	for n := range c.Clusters {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

const cacheFile = "cache.json"

// CacheDir is where the console keeps its files. TANDEM_CACHE_DIR
// overrides it (tests, several identities on one account).
func CacheDir() (string, error) {
	if d := os.Getenv("TANDEM_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("while finding the user cache directory: %w (set TANDEM_CACHE_DIR)", err)
	}
	return filepath.Join(d, "tandem"), nil
}

// LoadCache reads the cache, returning an empty one when none exists.
func LoadCache() (*Cache, error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	c := &Cache{Pins: map[string]string{}, Rotating: map[string]string{}, Clusters: map[string]CachedCluster{}, path: filepath.Join(dir, cacheFile)}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while reading the console cache: %w", err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("the console cache %s is damaged (%v): move it away; you will be asked to trust the nodes again", c.path, err)
	}
	if c.Pins == nil {
		c.Pins = map[string]string{}
	}
	if c.Clusters == nil {
		c.Clusters = map[string]CachedCluster{}
	}
	if c.Rotating == nil {
		c.Rotating = map[string]string{}
	}
	return c, nil
}

// beginRotation accepts next, besides old, at every address pinned to
// old (the node under its name, its IP, the cluster IP…). The caller
// saves the cache.
func (c *Cache) beginRotation(old, next string) {
	for a, fp := range c.Pins {
		if fp == old {
			c.Rotating[a] = next
		}
	}
}

// finishRotation pins next instead of old everywhere old was pinned, and
// forgets the rotation. The caller saves the cache.
func (c *Cache) finishRotation(old, next string) {
	for a, fp := range c.Pins {
		if fp == old || c.Rotating[a] == next {
			c.Pins[a] = next
			delete(c.Rotating, a)
		}
	}
}

// settleRotation updates a rotation from what a node said of itself over
// a connection the cache accepted (so it is that node): presenting the
// next certificate finishes the rotation (a console killed after the
// switch); the old one with nothing prepared means it was dropped. It
// reports whether the cache changed.
func (c *Cache) settleRotation(addr, fp, nextFP string) bool {
	next, ok := c.Rotating[addr]
	switch {
	case !ok || fp == "":
		return false
	case fp == next:
		c.finishRotation(c.Pins[addr], next)
		return true
	case fp == c.Pins[addr] && nextFP != next:
		for a, n := range c.Rotating {
			if n == next {
				delete(c.Rotating, a)
			}
		}
		return true
	}
	return false
}

// Save writes the cache atomically, mode 0600.
func (c *Cache) Save() error {
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("while creating the console cache directory: %w", err)
	}
	if err := checkPrivateDir(filepath.Dir(c.path)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(c.path, append(b, '\n'), 0o600)
}

// PinnedAddrs lists pinned addresses in order.
func (c *Cache) PinnedAddrs() []string {
	out := make([]string, 0, len(c.Pins))
	for a := range c.Pins {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
