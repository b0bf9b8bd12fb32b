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
does; a changed certificate is refused.

'tandem assemble' makes a cluster of two nodes, given each node's admin
token; the console keeps the tokens (tokens.json, mode 0600, beside its
cache), so 'status', 'events' and 'disassemble' need no more flags. For a
single node, --endpoint with --token-file or TANDEM_TOKEN still works.

On Linux, 'tandem lab' builds a complete playground cluster on this one
machine; start there.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Before any command: the directory that keeps the tokens must be
		// private, whatever made it.
		PersistentPreRun: func(cmd *cobra.Command, _ []string) { tightenCacheDir(cmd.ErrOrStderr()) },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoint, "endpoint", os.Getenv("TANDEM_ENDPOINT"), "node API address: host, host:port or https://host:port (env TANDEM_ENDPOINT)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "give up on the command after this long (unless given: assemble 30m, disassemble 5m, preflight 1m)")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the node's admin token (default: the TANDEM_TOKEN variable)")
	pf.BoolVar(&g.trustNew, "trust-new", false, "pin a node's certificate on first contact without asking (scripts); a changed certificate is still refused")
	pf.StringVar(&g.fingerprint, "fingerprint", "", "accept an unknown node only if its certificate has this fingerprint (sha256:…)")

	root.AddCommand(
		NewStatusCommand(g),
		NewAssembleCommand(g),
		NewPreflightCommand(g),
		NewEventsCommand(g),
		NewDisassembleCommand(g),
		NewSwitchoverCommand(g),
		NewFailoverCommand(g),
		NewFailoverModeCommand(g),
		NewEditCommand(g),
		NewUpgradeCommand(g),
		NewMaintenanceCommand(g),
		NewRotateCertCommand(g),
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

// contextFor is context for a command whose work takes longer than the
// global default: def unless the operator gave --timeout.
func (g *globals) contextFor(cmd *cobra.Command, def time.Duration) (context.Context, context.CancelFunc) {
	if f := cmd.Flags().Lookup("timeout"); f != nil && f.Changed {
		return g.context(cmd.Context())
	}
	return context.WithTimeout(cmd.Context(), def)
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
	fp, err := parseFingerprint("--fingerprint", g.fingerprint)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: err}
	}
	c, err := LoadCache()
	if err != nil {
		return nil, err
	}
	in := cmd.InOrStdin()
	return &trust{cache: c, trustNew: g.trustNew, fingerprint: fp, in: in, prompt: cmd.ErrOrStderr(), interactive: canAsk(in)}, nil
}

// canAsk reports whether the console may ask the operator questions on in:
// only on a terminal. A variable so that tests can play the operator.
var canAsk = func(in io.Reader) bool {
	f, ok := in.(*os.File)
	return ok && isTerminal(f)
}

// parseFingerprint checks a fingerprint flag and returns it lower-cased.
func parseFingerprint(flag, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	v = strings.ToLower(strings.TrimSpace(v))
	hex, ok := strings.CutPrefix(v, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%s %q must look like sha256:<64 hex digits>, as tandemd logs it", flag, v)
	}
	return v, nil
}

// Main runs the console and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	return execute(NewRootCommand(), args, stdout, stderr)
}

func execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "tandem:", err)
		if strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "accepts ") || strings.HasPrefix(err.Error(), "invalid argument") || strings.HasPrefix(err.Error(), "flag needs an argument") {
			return ExitUsage
		}
		return ExitCode(err)
	}
	return ExitOK
}
