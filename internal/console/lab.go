package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/lab"
)

// NewLabCommand is `tandem lab`: the one-machine playground.
func NewLabCommand() *cobra.Command {
	var (
		name    string
		verbose bool
	)
	defName := lab.DefaultName
	if v := os.Getenv("TANDEM_LAB"); v != "" {
		defName = v
	}
	logger := func(cmd *cobra.Command) *slog.Logger {
		level := slog.LevelWarn
		if verbose {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	}
	c := &cobra.Command{
		Use:   "lab",
		Short: "Build a complete two-node playground on this Linux machine (root)",
		Long: `The lab is a whole tandem installation on one Linux machine: a place to try
tandem, and the bed every end-to-end test runs in. 'tandem lab up' builds
(with the default --name lab and --subnet 10.77.0.0/24):

  host     address      name              what runs there
  a        10.77.0.11   a.lab.test        tandemd and PostgreSQL (node)
  b        10.77.0.12   b.lab.test        tandemd and PostgreSQL (node)
  client   10.77.0.100  client.lab.test   nothing: run the console here
  dns      10.77.0.53   dns.lab.test      dnsmasq, the lab's DNS server
  cluster  10.77.0.10   db.lab.test       the cluster IP, reserved for the primary

Each host is a network namespace (lab-a, lab-b, lab-client, lab-dns) with
one interface, eth0, plugged into a bridge that lives in a namespace of its
own (lab-sw). Nothing is added to this machine's own network, so lab
traffic never leaves the lab and the addresses cannot clash with yours.
Every lab host resolves names through the lab's dnsmasq (forward and
reverse), which answers only for the lab's domain and forwards nothing.

Reach a host with 'tandem lab exec HOST -- COMMAND', for example a shell on
the client with 'tandem lab exec client -- bash'. 'tandem lab env' prints
addresses, the nodes' API tokens and the PostgreSQL password. From the
client, talk to a node as an operator would:

  export TANDEM_TOKEN=<node a's token from 'tandem lab env'>
  tandem lab exec client -- tandem status --endpoint a.lab.test

'tandem lab down' stops every lab process (tandemd first, so PostgreSQL
shuts down cleanly) and removes the namespaces and files; 'up' does the
same first, so it also repairs a lab left behind by a crash.

Files live in /var/lib/tandem-lab/NAME (configs, logs, state, data).
Several labs run at once under different --name values (default "lab",
or $TANDEM_LAB); the names above then carry that name instead of "lab".
Needs root, iproute2, dnsmasq and PostgreSQL's server programs.`,
		Example: `  sudo tandem lab up
  sudo tandem lab env
  sudo tandem lab exec client -- getent hosts db.lab.test
  sudo tandem lab exec client -- bash
  sudo tandem lab down`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.PersistentFlags().StringVar(&name, "name", defName, "lab name: 1-8 lowercase letters and digits; prefixes everything the lab creates (env TANDEM_LAB)")
	c.PersistentFlags().BoolVar(&verbose, "verbose", false, "log every command the lab runs")

	labName := func() error {
		if err := lab.ValidateName(name); err != nil {
			return exitf(ExitUsage, "--name: %v", err)
		}
		return lab.CheckHost()
	}
	c.AddCommand(
		newLabUpCommand(&name, labName, logger),
		newLabDownCommand(&name, labName, logger),
		newLabExecCommand(&name, labName, logger),
		newLabEnvCommand(&name, labName),
	)
	return c
}

func newLabUpCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var (
		subnet    string
		tandemd   string
		noTandemd bool
		wait      time.Duration
	)
	c := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and start tandemd on both nodes (replaces a lab of the same name)",
		Long: `Build the lab: namespaces, bridge, addresses, the DNS server, and tandemd
on nodes a and b (each initialises its own PostgreSQL). Returns once both
nodes answer GET /health, then prints the hosts and what to do next.

A lab of the same name is removed first, so 'up' also repairs a lab left
half built. If a node does not become healthy, the lab is left up for
inspection and the end of its log is printed; 'tandem lab down' removes it.

tandemd is taken from --tandemd, else from the directory of this tandem
executable, else from PATH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := lab.Up(ctx, logger(cmd), lab.UpOptions{
				Name: *name, Subnet: subnet, Tandemd: tandemd, NoTandemd: noTandemd, Timeout: wait,
			}, cmd.OutOrStdout())
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&subnet, "subnet", lab.DefaultSubnet, "the lab's IPv4 subnet (/8 to /25); hosts get .11, .12, .53, .100 and the cluster IP .10")
	f.StringVar(&tandemd, "tandemd", "", "the tandemd executable to run on the nodes (default: next to tandem, then PATH)")
	f.BoolVar(&noTandemd, "no-tandemd", false, "build the hosts and DNS only; start no tandemd")
	f.DurationVar(&wait, "wait", lab.DefaultUpTimeout, "how long to wait for both nodes to answer /health")
	return c
}

func newLabDownCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop every lab process and remove the lab's namespaces and files",
		Long: `Stop the lab: tandemd gets SIGTERM first so it shuts PostgreSQL down cleanly
(killed if it takes too long), then every other process in the lab's
namespaces; then the namespaces, /etc/netns/NAME-* and /var/lib/tandem-lab/NAME
are removed. Safe to run on a lab that is half built or already gone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			if err := lab.Down(context.WithoutCancel(cmd.Context()), logger(cmd), *name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s: removed\n", *name)
			return nil
		},
	}
}

func newLabExecCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	c := &cobra.Command{
		Use:   "exec [--name N] HOST [--] COMMAND [ARG...]",
		Short: "Run a command on a lab host (a, b, client or dns)",
		Long: `Run COMMAND inside HOST's network namespace, with this terminal and
environment; the host's resolv.conf, hosts and nsswitch.conf are the lab's,
so names like a, b and db resolve through the lab's DNS server. The exit
status is the command's. Flags of tandem itself (--name) go before HOST;
everything after HOST is the command.`,
		Example: `  tandem lab exec client -- getent hosts db
  tandem lab exec a -- ip addr
  TANDEM_TOKEN=$(tandem lab env --json | jq -r '.nodes[0].token') \
    tandem lab exec client -- tandem status --endpoint a.lab.test --trust-new`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 && args[1] == "--" {
				args = args[1:]
			}
			if len(args) < 2 {
				return exitf(ExitUsage, "name a host and a command, for example: tandem lab exec client -- getent hosts a")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			host, argv := args[0], args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			// sudo's PATH often lacks the console; use this very executable then.
			if argv[0] == "tandem" {
				if _, err := exec.LookPath("tandem"); err != nil {
					if self, err := os.Executable(); err == nil {
						argv = append([]string{self}, argv[1:]...)
					}
				}
			}
			code, err := lab.Exec(cmd.Context(), logger(cmd), *name, host, argv, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if errors.Is(err, lab.ErrCommandNotFound) {
				return &ExitError{Code: code, Err: err}
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("the command on %s exited with status %d", host, code)}
			}
			return nil
		},
	}
	// Everything after HOST belongs to the command, flags included.
	c.Flags().SetInterspersed(false)
	return c
}

func newLabEnvCommand(name *string, check func() error) *cobra.Command {
	var asJSON, asShell bool
	c := &cobra.Command{
		Use:   "env",
		Short: "Print the lab's addresses, names and credentials",
		Long: `Print the lab's hosts, addresses and DNS names, each node's API URL and admin
token, and the PostgreSQL port, user and password. --json (or -o json)
prints the same for scripts: cluster_ip, dns_name, dns_server, client_ip,
nodes[] {name, ip, fqdn, api, token}, postgres {port, user, password}.
--shell prints export lines for eval: TANDEM_LAB, TANDEM_TOKEN_A,
TANDEM_TOKEN_B and TANDEM_LAB_* (addresses, PostgreSQL password).`,
		Example: `  tandem lab env
  tandem lab env --json | jq -r '.nodes[] | select(.name=="a") | .token'
  eval "$(sudo tandem lab env --shell)"; echo "$TANDEM_TOKEN_A"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			env := l.Env()
			if asShell {
				return env.WriteShell(cmd.OutOrStdout())
			}
			if o, _ := cmd.Flags().GetString("output"); asJSON || o == "json" {
				return printJSON(cmd.OutOrStdout(), env)
			}
			return env.WriteText(cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&asShell, "shell", false, "print shell export lines, for eval")
	c.MarkFlagsMutuallyExclusive("json", "shell")
	return c
}
