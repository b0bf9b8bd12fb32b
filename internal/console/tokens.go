package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	t := &Tokens{ByAddress: map[string]string{}, path: filepath.Join(dir, tokensFile)}
	b, err := os.ReadFile(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
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
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(t.path, append(b, '\n'), 0o600)
}
