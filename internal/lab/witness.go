package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// ConsoleDir is where the lab's console on the client keeps its cache and
// tokens: `tandem lab exec client -- tandem status` finds the cluster there.
func (l *Layout) ConsoleDir() string { return filepath.Join(l.Dir, "console") }

// WitnessEndpoint is the witness's API address as the lab gives it to the
// console (`--witness w.<domain>`, which the console reads as port 7400):
// by name, as an operator would, so that assembly also proves w resolves.
func (l *Layout) WitnessEndpoint(w Host) string {
	return net.JoinHostPort(w.FQDN, strconv.Itoa(APIPort))
}

// witnessAssembleArgs are the flags that make `tandem assemble` set up
// automatic failover with the lab's witness.
func (l *Layout) witnessAssembleArgs(w Host) []string {
	return []string{"--failover", FailoverAutomatic, "--witness", w.FQDN}
}

// keepWitnessToken puts the witness's admin token into the lab console's
// token store, under the address the console is given for the witness, so
// that `tandem assemble --witness w.<domain>` on the client (by `lab up`,
// or by hand after `--no-assemble`) needs no token flag.
func (l *Layout) keepWitnessToken(w Host) error {
	tok := l.secret(w.Name, TokenFile)
	if tok == "" {
		return fmt.Errorf("the witness %s answers /health but has written no admin token to %s", w.Name, filepath.Join(l.StateDir(w.Name), TokenFile))
	}
	if err := KeepConsoleToken(l.ConsoleDir(), l.WitnessEndpoint(w), tok); err != nil {
		return fmt.Errorf("while giving the lab's console the witness's token: %w", err)
	}
	return nil
}

// consoleTokens is the console's token store (tokens.json beside its
// cache): API address (host:port) → admin token. The lab cannot use the
// console's own type (the console imports the lab), so the format is
// repeated here; internal/console's tests read what this writes.
type consoleTokens struct {
	ByAddress map[string]string `json:"tokens"`
}

// KeepConsoleToken adds token for addr to the token store of the console
// whose cache directory is dir, keeping the tokens already there. The
// directory is made 0700 and the file 0600, as the console requires.
func KeepConsoleToken(dir, addr, token string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "tokens.json")
	t := consoleTokens{ByAddress: map[string]string{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("%s is damaged: %w", path, err)
		}
		if t.ByAddress == nil {
			t.ByAddress = map[string]string{}
		}
	}
	t.ByAddress[addr] = token
	out, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(out, '\n'), 0o600)
}
