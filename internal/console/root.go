// Package console is `tandem`, the operator's command line. One file per
// command; each NewXxxCommand returns a cobra command whose RunE can be
// driven in-process by tests.
package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/version"
)

// globals are the flags every command shares.
type globals struct {
	endpoint    string
	output      string
	timeout     time.Duration
	tokenFile   string
	trustNew    bool
	fingerprint string
}

// NewRootCommand builds the whole console.
func NewRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "tandem",
		Short: "The tandem console: watch and drive a two-node PostgreSQL HA pair",
		Long: `tandem is the operator's console for a tandem cluster: two Linux nodes,
each running tandemd and PostgreSQL, one primary and one hot standby.

It talks HTTPS to the node API (port 7400). On first contact with a node it
shows the node's certificate fingerprint and pins it in its cache, as ssh
does; a changed certificate is refused. Commands that need authority read
the node's admin token from --token-file or the TANDEM_TOKEN variable.

On Linux, 'tandem lab' builds a complete playground cluster on this one
machine; start there.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoint, "endpoint", os.Getenv("TANDEM_ENDPOINT"), "node API address: host, host:port or https://host:port (env TANDEM_ENDPOINT)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "give up on the command after this long")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the node's admin token (default: the TANDEM_TOKEN variable)")
	pf.BoolVar(&g.trustNew, "trust-new", false, "pin a node's certificate on first contact without asking (scripts); a changed certificate is still refused")
	pf.StringVar(&g.fingerprint, "fingerprint", "", "accept an unknown node only if its certificate has this fingerprint (sha256:…)")

	root.AddCommand(
		NewStatusCommand(g),
		NewTrustCommand(),
		NewLabCommand(),
	)
	return root
}

func (g *globals) validateOutput() error {
	switch g.output {
	case "table", "json":
		return nil
	}
	return exitf(ExitUsage, "--output %q: use table or json", g.output)
}

func (g *globals) context(parent context.Context) (context.Context, context.CancelFunc) {
	if g.timeout <= 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, g.timeout)
}

// token returns the admin token from --token-file, else TANDEM_TOKEN.
func (g *globals) token() (string, error) {
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return "", exitf(ExitUsage, "while reading --token-file: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(os.Getenv("TANDEM_TOKEN")), nil
}

func (g *globals) trust(cmd *cobra.Command) (*trust, error) {
	if g.fingerprint != "" && !strings.HasPrefix(g.fingerprint, "sha256:") {
		return nil, exitf(ExitUsage, "--fingerprint %q must look like sha256:<64 hex digits>, as tandemd logs it", g.fingerprint)
	}
	c, err := LoadCache()
	if err != nil {
		return nil, err
	}
	in := cmd.InOrStdin()
	interactive := false
	if f, ok := in.(*os.File); ok {
		interactive = isTerminal(f)
	}
	return &trust{cache: c, trustNew: g.trustNew, fingerprint: strings.ToLower(g.fingerprint), in: in, prompt: cmd.ErrOrStderr(), interactive: interactive}, nil
}

// Main runs the console and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "tandem:", err)
		if strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") || strings.HasPrefix(err.Error(), "invalid argument") {
			return ExitUsage
		}
		return ExitCode(err)
	}
	return ExitOK
}
