package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
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

'tandem lab up --failover automatic' adds the quorum's third member:

  w        10.77.0.13   w.lab.test        tandem-witness (an etcd member, no PostgreSQL)

and assembles the cluster for automatic failover with w as its witness.
Without the flag the lab has no w and failover waits for a person.

'tandem lab up --cross-subnet' puts the nodes in two subnets of their own,
joined by a router (namespace lab-r), with no cluster IP and BIND 9 as the
DNS server, which takes updates of db.lab.test signed with a TSIG key the
lab makes (see 'tandem lab up --help'); it does not assemble:

  a        10.77.1.11   a.lab.test        tandemd and PostgreSQL (node)
  b        10.77.2.12   b.lab.test        tandemd and PostgreSQL (node)
  client   10.77.3.100  client.lab.test   nothing: run the console here
  dns      10.77.3.53   dns.lab.test      named (BIND 9), the lab's DNS server
  router   10.77.1.1, 10.77.2.1, 10.77.3.1  (namespace lab-r, not a host)

'tandem lab up --ipv6' builds the same in IPv6 (fd00:77::/64: a is
fd00:77::11, the cluster IP fd00:77::10, and so on; AAAA and ip6.arpa
records instead of A and in-addr.arpa).

Each host is a network namespace (lab-a, lab-b, lab-client, lab-dns, lab-w) with
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

Faults, to see what tandem does about them:

  power-off HOST / power-on HOST    cut a host's power / boot it again (w too)
  partition HOST1 HOST2 [--oneway]  drop all traffic between two hosts
  netem HOST1 HOST2 --delay 300ms --loss 20%
                                    make the link between two hosts slow or lossy
  heal [HOST1 HOST2]                undo partitions and netem (all of them by default)
  pause HOST [--process P] / resume HOST
                                    freeze processes (SIGSTOP) / let them go on
  dns set|rm|ptr|list|reset         break (and mend) the lab's DNS records

Service management, as systemctl does it on a real node:

  reload HOST                       systemctl reload tandemd: the binary on disk
                                    replaces tandemd, PostgreSQL and the cluster IP stay
  restart HOST                      systemctl restart tandemd: stops PostgreSQL too

'tandem lab env' lists the faults in force.

'tandem lab down' stops every lab process (tandemd first, so PostgreSQL
shuts down cleanly) and removes the namespaces and files, faults and all;
'up' does the same first, so it also repairs a lab left behind by a crash.

Files live in /var/lib/tandem-lab/NAME (configs, logs, state, data).
Several labs run at once under different --name values (default "lab",
or $TANDEM_LAB); the names above then carry that name instead of "lab".
Needs root, iproute2 (ip, tc), dnsmasq (bind9 with --cross-subnet) and
PostgreSQL's server programs.`,
		Example: `  sudo tandem lab up
  sudo tandem lab up --failover automatic     # with the witness w
  sudo tandem lab env
  sudo tandem lab exec client -- getent hosts db.lab.test
  sudo tandem lab partition a b
  sudo tandem lab heal
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
		newLabPowerOffCommand(&name, labName, logger),
		newLabPowerOnCommand(&name, labName, logger),
		newLabPartitionCommand(&name, labName, logger),
		newLabNetemCommand(&name, labName, logger),
		newLabHealCommand(&name, labName, logger),
		newLabPauseCommand(&name, labName, logger),
		newLabResumeCommand(&name, labName, logger),
		newLabReloadCommand(&name, labName, logger),
		newLabRestartCommand(&name, labName, logger),
		newLabDNSCommand(&name, labName, logger),
		newLabWatchdogCommand(&name, labName),
	)
	return c
}

func newLabUpCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var (
		subnet      string
		ipv6        bool
		tandemd     string
		noTandemd   bool
		noAssemble  bool
		replication string
		failover    string
		etcdExt     bool
		crossSubnet bool
		wait        time.Duration
	)
	c := &cobra.Command{
		Use:   "up",
		Short: "Build the lab, start tandemd on both nodes and assemble the cluster (replaces a lab of the same name)",
		Long: `Build the lab: namespaces, bridge, addresses, the DNS server, and tandemd
on nodes a and b (each initialises its own PostgreSQL). Once both nodes
answer GET /health, the console on the client assembles the cluster, as an
operator would: a primary, b its hot standby, the cluster IP on a. In sync
and strict mode it then waits (at most 1m) until the primary's cluster
record says synchronized. Then it prints the hosts and what to do next. 'tandem lab exec client -- tandem
status' shows the cluster (the client's console keeps its cache in the
lab's directory). --no-assemble stops before the assembly.

--failover automatic adds host w, the witness: its own namespace on the
lab bridge (.13, or ::13 with --ipv6; name w.<lab>.test, forward and
reverse), running 'tandem-witness' with a config written to
/var/lib/tandem-lab/NAME/w/tandemd.yaml (its etcd member on ports 7410 and
7411). 'up' waits for its /health too, puts its admin token in the
client's console store, and assembles with '--failover automatic --witness
w.<lab>.test'. The mode is recorded in the lab's layout; 'lab env' shows it.

--failover automatic --etcd-external tests the other shape of the quorum,
an etcd cluster the site already runs: instead of w, hosts e1, e2 and e3
(.21 to .23) each run one member of Debian's etcd (package etcd-server),
on ports 2379 and 2380, with TLS from a CA the lab makes (members and
clients must present a certificate it signed). Each node's config points
quorum.etcd.* at its client certificate, and the lab assembles with
'--etcd https://<e1>:2379,…'. power-off, partition and pause work on the
etcd hosts; power-on starts etcd again.

--cross-subnet builds the shape of issue 14, two nodes in two subnets with
no address in common: a in 10.77.1.0/24 (.11), b in 10.77.2.0/24 (.12),
and client, dns (and w or e1-e3) in 10.77.3.0/24, each subnet a bridge of
its own, joined by a router namespace NAME-r at .1 of each (the 2nd, 3rd
and 4th /24 of --subnet, default 10.77.0.0/16). There is no cluster IP:
the cluster name db.NAME.test is an A record that the primary points at
itself by dynamic DNS, so the DNS server is BIND 9 (Debian's bind9)
instead of dnsmasq, with forward and reverse zones the lab writes and a
TSIG key (hmac-sha256) that may update the forward zone; each node has a
copy in /var/lib/tandem-lab/NAME/NODE/dns-update.key (mode 0600) and 'lab
env' names it; each node's tandemd config has dns_update.* pointing at
it. IPv4 only. The cluster is assembled with 'tandem assemble --endpoint
dns' (a and b reach each other through the router). power-off, power-on, partition, netem, heal, pause and
resume work as in the default lab (across the router, partitions and
netem match the peer's address instead of its MAC); 'lab dns' edits
rewrite BIND's zone files and restart it, which discards dynamic updates.

A lab of the same name is removed first, so 'up' also repairs a lab left
half built. If a node does not become healthy, the lab is left up for
inspection and the end of its log is printed; 'tandem lab down' removes it.

With --ipv6 (or an IPv6 --subnet) every address is IPv6: the nodes, the
client, the DNS server and the cluster IP, with AAAA and ip6.arpa PTR
records; there is no IPv4 in such a lab. Addresses are added without
duplicate address detection, so they work at once.

tandemd is taken from --tandemd, else from the directory of this tandem
executable, else from PATH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckFailover(failover); err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if etcdExt && failover != lab.FailoverAutomatic {
				return exitf(ExitUsage, "--etcd-external is for --failover automatic (a manual-mode cluster has no quorum)")
			}
			if crossSubnet && ipv6 {
				return exitf(ExitUsage, "--cross-subnet builds an IPv4 lab only for now: leave out --ipv6")
			}
			if err := check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err := lab.Up(ctx, logger(cmd), lab.UpOptions{
				Name: *name, Subnet: subnet, IPv6: ipv6, Tandemd: tandemd, NoTandemd: noTandemd, Timeout: wait,
				NoAssemble: noAssemble || noTandemd, Replication: replication, Failover: failover,
				ExternalEtcd: etcdExt, CrossSubnet: crossSubnet,
			}, cmd.OutOrStdout())
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&subnet, "subnet", "", "the lab's subnet (default "+lab.DefaultSubnet+", or "+lab.DefaultSubnet6+" with --ipv6): IPv4 /8 to /25, IPv6 /16 to /112; hosts get .11, .12, .53, .100 (::11, ::12, ::53, ::100), the witness w .13 (::13) and the cluster IP .10 (::10)")
	f.BoolVar(&ipv6, "ipv6", false, "build an IPv6 lab (AAAA and ip6.arpa records, IPv6 node IPs)")
	f.StringVar(&tandemd, "tandemd", "", "the tandemd executable to run on the nodes (default: next to tandem, then PATH)")
	f.BoolVar(&noTandemd, "no-tandemd", false, "build the hosts and DNS only; start no tandemd")
	f.BoolVar(&noAssemble, "no-assemble", false, "start tandemd on both nodes but do not assemble the cluster (to try `tandem assemble` yourself)")
	f.StringVar(&replication, "replication", "", "replication mode to assemble with: async, sync (default) or strict")
	f.StringVar(&failover, "failover", lab.FailoverManual, "failover mode: manual (two nodes, failover by a person) or automatic (adds the witness host w and assembles with it)")
	f.BoolVar(&etcdExt, "etcd-external", false, "with --failover automatic: the quorum is an etcd cluster on hosts e1-e3 (Debian's etcd-server) instead of the witness w")
	f.BoolVar(&crossSubnet, "cross-subnet", false, "put a, b and the client in three subnets joined by a router, with BIND 9 (dynamic updates, a TSIG key) as the DNS server and no cluster IP; IPv4 only; the cluster is assembled with --endpoint dns")
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
		Short: "Run a command on a lab host (a, b, client, dns, or w with --failover automatic)",
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
token, the witness's in an automatic-mode lab, and the PostgreSQL port,
user and password. --json (or -o json) prints the same for scripts:
cluster_ip, dns_name, dns_server, client_ip, failover (manual or
automatic), nodes[] {name, ip, fqdn, api, token}, witness {name, ip, fqdn,
api, token, peer_port, client_port} (only with a witness), postgres {port,
user, password}; in a cross-subnet lab also cross_subnet, router (its
namespace), segments[] {name, subnet, bridge, gateway, router_iface,
router_veth, router_mac}, hosts[].subnet and .gateway, and dns_update
{software, server, zone, key_name, algorithm, key_files {a, b}, config,
log}. --shell prints export lines for eval: TANDEM_LAB, TANDEM_TOKEN_A,
TANDEM_TOKEN_B, TANDEM_TOKEN_W (with a witness) and TANDEM_LAB_*
(addresses, TANDEM_LAB_FAILOVER, PostgreSQL password; in a cross-subnet lab
TANDEM_LAB_CROSS_SUBNET=1, TANDEM_LAB_DNS_ZONE, TANDEM_LAB_DNS_KEY_NAME,
TANDEM_LAB_DNS_KEY_ALGORITHM, TANDEM_LAB_A_DNS_KEY_FILE and
TANDEM_LAB_B_DNS_KEY_FILE).`,
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

// labArgs checks a fault command's host arguments: at least min and at
// most max of them.
func labArgs(min, max int, usage string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return exitf(ExitUsage, "usage: tandem lab %s", usage)
		}
		return nil
	}
}

// labUsage marks an error about the command's arguments (an unknown host,
// the same host twice) with the usage exit status; other errors keep theirs.
func labUsage(err error) error {
	if err == nil || errors.Is(err, lab.ErrNoLab) {
		return err
	}
	return &ExitError{Code: ExitUsage, Err: err}
}

func newLabPowerOffCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "power-off HOST",
		Short: "Cut a lab host's power: its network goes dark and every process on it dies",
		Long: `Do to HOST what pulling its power cord would. Its eth0 goes down first, so
nothing it does from then on reaches the wire (no FIN, no RST, no ARP: its
peers see silence, as after a real power cut); then every process on it
gets SIGKILL (tandemd, PostgreSQL and its children, anything started with
'lab exec'), and its addresses, the cluster IP included, are gone.

PostgreSQL on a node is killed without a shutdown checkpoint, as in a
crash. The host stays off until 'tandem lab power-on HOST'; partitions and
degraded links toward it stay in force (they belong to the network).`,
		Example: `  tandem lab power-off b
  tandem lab power-on b`,
		Args: labArgs(1, 1, "power-off HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			return lab.PowerOff(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], cmd.OutOrStdout())
		},
	}
}

func newLabPowerOnCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var wait time.Duration
	c := &cobra.Command{
		Use:   "power-on HOST",
		Short: "Boot a lab host again: its address comes back and tandemd (or dnsmasq) starts",
		Long: `Boot HOST after 'power-off': eth0 gets its static address back (the cluster
IP does not: only tandemd adds that) and comes up; then what 'up' ran there
starts again: tandemd with the same configuration on a node (detached, as
'up' starts it), 'tandem-witness' on the witness w, dnsmasq on the dns
host. On a node or w the command waits, up to --wait, until tandemd
answers GET /health, asked from the host itself so that a partition does
not hide it.

On a host that is on, power-on only starts tandemd (or dnsmasq) if it is
not running, for example after it was stopped by hand; otherwise it
changes nothing.`,
		Example: `  tandem lab power-on b
  tandem lab power-on a --wait 2m`,
		Args: labArgs(1, 1, "power-on HOST [--wait DURATION]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.PowerOn(ctx, logger(cmd), *name, args[0], wait, cmd.OutOrStdout())
		},
	}
	c.Flags().DurationVar(&wait, "wait", lab.DefaultPowerOnTimeout, "how long to wait for a node's (or the witness's) tandemd to answer /health")
	return c
}

func newLabPartitionCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var oneway bool
	c := &cobra.Command{
		Use:   "partition HOST1 HOST2",
		Short: "Drop all traffic between two lab hosts; every other path stays",
		Long: `Drop everything HOST1 and HOST2 send each other, leaving every other path
intact: HOST1 and HOST2 still reach, and are reached by, the other hosts.
With --oneway only what HOST1 sends to HOST2 is dropped (HOST2 still
reaches HOST1, but gets no answers).

The hosts' own tc does it: each dropping host gets a clsact qdisc on eth0
whose ingress filter (classic BPF, cls_bpf) drops frames by the sender's
MAC address. So IP to any of the host's addresses (the cluster IP too),
ARP and IPv6 neighbour discovery are all cut, as by a real break in the
network, and the sender sees silence, not errors. 'tandem lab heal HOST1
HOST2' (or 'heal' for all) removes it; 'lab down' removes everything.`,
		Example: `  tandem lab partition a b
  tandem lab partition client a --oneway
  tandem lab heal a b`,
		Args: labArgs(2, 2, "partition HOST1 HOST2 [--oneway]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			if err := checkPair(*name, args[0], args[1]); err != nil {
				return err
			}
			return lab.Partition(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], args[1], oneway, cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&oneway, "oneway", false, "drop only what HOST1 sends to HOST2")
	return c
}

// checkPair validates two hosts of a lab before anything changes.
func checkPair(name, h1, h2 string) error {
	l, err := lab.Load(name)
	if err != nil {
		return err
	}
	return labUsage(l.CheckPair(h1, h2))
}

func newLabNetemCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var (
		delay, jitter time.Duration
		loss          string
	)
	c := &cobra.Command{
		Use:   "netem HOST1 HOST2 [--delay D] [--jitter D] [--loss P%]",
		Short: "Make the link between two lab hosts slow or lossy",
		Long: `Degrade the link between HOST1 and HOST2, in both directions: each host's
egress toward the other goes through netem with --delay (plus or minus
--jitter) and --loss. Traffic to every other host is untouched. Running it
again for the same pair replaces the settings; 'tandem lab heal HOST1
HOST2' (or 'heal' for all) restores the link.

Each host gets an htb root qdisc on eth0 whose unclassified traffic goes
straight out, one class per degraded peer with a netem qdisc under it, and
a classic BPF filter sending frames for that peer's MAC to it. The kernel
needs the netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem); without it
the command says so and changes nothing.`,
		Example: `  tandem lab netem a b --delay 300ms --loss 20%
  tandem lab netem client a --delay 50ms --jitter 10ms
  tandem lab heal a b`,
		Args: labArgs(2, 2, "netem HOST1 HOST2 [--delay D] [--jitter D] [--loss P%]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := lab.Netem{Delay: delay, Jitter: jitter}
			if loss != "" {
				v, err := lab.ParseLoss(loss)
				if err != nil {
					return exitf(ExitUsage, "%v", err)
				}
				n.Loss = v
			}
			if err := n.Validate(); err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if err := check(); err != nil {
				return err
			}
			if err := checkPair(*name, args[0], args[1]); err != nil {
				return err
			}
			return lab.Degrade(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], args[1], n, cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.DurationVar(&delay, "delay", 0, "added one-way delay, each direction (e.g. 300ms)")
	f.DurationVar(&jitter, "jitter", 0, "random variation of the delay, at most --delay (e.g. 20ms)")
	f.StringVar(&loss, "loss", "", "share of packets dropped, each direction (e.g. 20%)")
	return c
}

func newLabHealCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "heal [HOST1 HOST2]",
		Short: "Remove partitions and degraded links (between two hosts, or all of them)",
		Long: `Undo 'partition' and 'netem' between HOST1 and HOST2 (both directions), or
every partition and degraded link in the lab when no host is named; then
every host's eth0 has the plain configuration 'up' gave it. Powered-off
hosts and paused processes stay as they are: 'power-on' and 'resume' undo
those.`,
		Example: `  tandem lab heal a b
  tandem lab heal`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return exitf(ExitUsage, "usage: tandem lab heal [HOST1 HOST2] (two hosts, or none for everything)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			var h1, h2 string
			if len(args) == 2 {
				h1, h2 = args[0], args[1]
				if err := checkPair(*name, h1, h2); err != nil {
					return err
				}
			}
			return lab.Heal(context.WithoutCancel(cmd.Context()), logger(cmd), *name, h1, h2, cmd.OutOrStdout())
		},
	}
}

func newLabPauseCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var process string
	c := &cobra.Command{
		Use:   "pause HOST [--process tandemd|postgres]",
		Short: "Freeze the processes on a lab host (SIGSTOP) until 'resume'",
		Long: `Stop processes on HOST with SIGSTOP: every process there (a frozen machine,
a VM paused by its hypervisor), or with --process only tandemd, or only
PostgreSQL (the postmaster and all its children); on the witness w,
--process tandemd freezes tandem-witness, its etcd member with it. Their sockets stay open
and the kernel still accepts connections for them, so peers see a process
that answers nothing, not one that is gone. 'tandem lab resume HOST'
continues them; 'lab down' continues them before stopping the lab.`,
		Example: `  tandem lab pause a --process tandemd
  tandem lab resume a`,
		Args: labArgs(1, 1, "pause HOST [--process tandemd|postgres]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.CheckProcess(process); err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			return lab.Pause(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], process, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&process, "process", "", "pause only tandemd or only postgres (default: every process on the host)")
	return c
}

func newLabResumeCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "resume HOST",
		Short: "Continue the processes 'pause' froze on a lab host (SIGCONT)",
		Args:  labArgs(1, 1, "resume HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			return lab.Resume(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], cmd.OutOrStdout())
		},
	}
}

func newLabDNSCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	c := &cobra.Command{
		Use:   "dns",
		Short: "Show and edit the lab's DNS records (to break DNS on purpose, and mend it)",
		Long: `The lab's dnsmasq answers from a list of forward records (NAME → address,
A or AAAA) and reverse records (address → NAME, PTR), kept apart so that
either can be broken alone: a missing PTR, a cluster name pointing
elsewhere, a record of the wrong family. 'up' gives every host and the
cluster name both. A NAME without a dot is in the lab's domain (b is
b.lab.test).

Each edit is saved in /var/lib/tandem-lab/NAME/dns.json and dnsmasq is
restarted with it (it reads its records only at start), which takes a
moment; the command returns once the server answers again. While the dns
host is powered off, edits are saved and apply when it comes back.

A name whose addresses all have a PTR is served as a dnsmasq host-record
(NODATA for the other family, as a real zone would answer). A forward
record without a matching PTR is served with dnsmasq's address= option,
which also answers for names below it and answers NXDOMAIN for the other
family: good enough to test what a missing PTR does.`,
		Example: `  tandem lab dns list
  tandem lab dns ptr --rm 10.77.0.12          # b loses its PTR record
  tandem lab dns set db 10.77.0.99            # the cluster name points elsewhere
  tandem lab dns set b 10.77.0.12 --no-ptr    # forward only
  tandem lab dns rm b                         # b no longer resolves, either way
  tandem lab dns reset                        # back to what 'up' made`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	edit := func(cmd *cobra.Command, fn func(l *lab.Layout, z *lab.Zone) (string, error)) error {
		if err := check(); err != nil {
			return err
		}
		// Validate before the lab is touched, so bad input changes nothing.
		l, err := lab.Load(*name)
		if err != nil {
			return err
		}
		probe := &lab.Zone{Forward: map[string][]string{}, Reverse: map[string][]string{}}
		if _, err := fn(l, probe); err != nil {
			return exitf(ExitUsage, "%v", err)
		}
		return lab.EditDNS(context.WithoutCancel(cmd.Context()), logger(cmd), *name, cmd.OutOrStdout(), fn)
	}

	var noPTR bool
	set := &cobra.Command{
		Use:   "set NAME IP [IP...]",
		Short: "Give NAME exactly these addresses, and each address a PTR naming NAME",
		Long: `Replace NAME's forward records with IP... (A for IPv4, AAAA for IPv6; any
family, so a record of the wrong family can be made on purpose). Each IP's
PTR is set to NAME (replacing the name it had), and PTRs of NAME's former
addresses that named NAME are removed. With --no-ptr only the forward
records change.`,
		Args: labArgs(2, 64, "dns set NAME IP [IP...] [--no-ptr]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd, func(l *lab.Layout, z *lab.Zone) (string, error) {
				n, err := l.QualifyName(args[0])
				if err != nil {
					return "", err
				}
				var ips []string
				for _, a := range args[1:] {
					ip, err := lab.ParseRecordIP(a)
					if err != nil {
						return "", err
					}
					ips = append(ips, ip)
				}
				z.Set(n, ips, !noPTR)
				what := "and PTR"
				if noPTR {
					what = "only (no PTR change)"
				}
				return fmt.Sprintf("DNS: %s → %s, forward %s", n, strings.Join(ips, ", "), what), nil
			})
		},
	}
	set.Flags().BoolVar(&noPTR, "no-ptr", false, "change the forward records only")

	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove NAME's forward records and every PTR naming it",
		Args:  labArgs(1, 1, "dns rm NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd, func(l *lab.Layout, z *lab.Zone) (string, error) {
				n, err := l.QualifyName(args[0])
				if err != nil {
					return "", err
				}
				if !z.Remove(n) {
					return fmt.Sprintf("DNS: %s had no records", n), nil
				}
				return fmt.Sprintf("DNS: %s removed, forward and reverse", n), nil
			})
		},
	}

	var ptrRm bool
	ptr := &cobra.Command{
		Use:   "ptr IP NAME | ptr --rm IP",
		Short: "Set the PTR record of IP to NAME, or remove it (--rm)",
		Long: `Make IP's reverse record (PTR) name NAME, replacing what it named; forward
records stay as they are. With --rm, IP gets no PTR record at all, so a
reverse lookup of it fails (NXDOMAIN).`,
		Args: func(_ *cobra.Command, args []string) error {
			if (ptrRm && len(args) != 1) || (!ptrRm && len(args) != 2) {
				return exitf(ExitUsage, "usage: tandem lab dns ptr IP NAME, or tandem lab dns ptr --rm IP")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd, func(l *lab.Layout, z *lab.Zone) (string, error) {
				ip, err := lab.ParseRecordIP(args[0])
				if err != nil {
					return "", err
				}
				if ptrRm {
					z.SetPTR(ip, "")
					return fmt.Sprintf("DNS: %s has no PTR record now", ip), nil
				}
				n, err := l.QualifyName(args[1])
				if err != nil {
					return "", err
				}
				z.SetPTR(ip, n)
				return fmt.Sprintf("DNS: PTR of %s → %s", ip, n), nil
			})
		},
	}
	ptr.Flags().BoolVar(&ptrRm, "rm", false, "remove IP's PTR record")

	reset := &cobra.Command{
		Use:   "reset",
		Short: "Restore the records 'up' made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return edit(cmd, func(l *lab.Layout, z *lab.Zone) (string, error) {
				*z = *l.DefaultZone()
				return "DNS: records reset to what `lab up` made", nil
			})
		},
	}

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the records the lab's DNS server answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(); err != nil {
				return err
			}
			z, err := lab.DNSZone(*name)
			if err != nil {
				return err
			}
			if o, _ := cmd.Flags().GetString("output"); asJSON || o == "json" {
				return printJSON(cmd.OutOrStdout(), z)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, line := range z.Lines() {
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON: {forward: {name: [ip]}, reverse: {ip: [name]}}")

	c.AddCommand(list, set, rm, ptr, reset)
	return c
}

// newLabWatchdogCommand is the stand-in for a lab node's watchdog device,
// which `lab up --failover automatic` starts for each node; hidden, as
// nobody runs it by hand.
func newLabWatchdogCommand(name *string, check func() error) *cobra.Command {
	return &cobra.Command{
		Use:    "watchdog-device NODE",
		Short:  "Serve NODE's simulated watchdog device (started by 'lab up --failover automatic')",
		Hidden: true,
		Args:   labArgs(1, 1, "watchdog-device NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			// Its log is the stand-in's log file (stdout and stderr).
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			return lab.ServeWatchdog(ctx, log, *name, args[0], cmd.OutOrStdout())
		},
	}
}

func newLabReloadCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "reload HOST",
		Short: "Do what 'systemctl reload tandemd' does on a lab node: replace tandemd live",
		Long: `Run on node HOST what the unit's ExecReload runs: 'tandemd --config FILE
--reload', with the lab's tandemd executable (the file 'lab up' started;
build a new one over it to try an upgrade). The running tandemd checks the
new binary against its configuration, lets the operation in flight finish,
and re-executes itself with the same PID; PostgreSQL keeps running with
its clients and the cluster IP stays where it is. The command returns once
the new process answers, and fails (exit 1) if the reload was refused.`,
		Example: `  go build -o /usr/local/bin/tandemd ./cmd/tandemd && sudo tandem lab reload a`,
		Args:    labArgs(1, 1, "reload HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			code, err := lab.Reload(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("reload on %s failed (exit status %d)", args[0], code)}
			}
			return nil
		},
	}
}

func newLabRestartCommand(name *string, check func() error, logger func(*cobra.Command) *slog.Logger) *cobra.Command {
	var wait time.Duration
	c := &cobra.Command{
		Use:   "restart HOST",
		Short: "Do what 'systemctl restart tandemd' does on a lab node or the witness",
		Long: `Stop tandemd on HOST with SIGTERM, as systemd does (on a node it stops
PostgreSQL cleanly first, and a primary gives up the cluster IP), wait for
it to exit, start it again with the same configuration and wait for its
/health. On the primary this is an outage for clients; 'reload' is not.`,
		Example: `  sudo tandem lab restart b`,
		Args:    labArgs(1, 1, "restart HOST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(); err != nil {
				return err
			}
			l, err := lab.Load(*name)
			if err != nil {
				return err
			}
			if _, err := l.LookupHost(args[0]); err != nil {
				return labUsage(err)
			}
			return lab.Restart(context.WithoutCancel(cmd.Context()), logger(cmd), *name, args[0], wait, cmd.OutOrStdout())
		},
	}
	c.Flags().DurationVar(&wait, "wait", lab.DefaultPowerOnTimeout, "how long to wait for the restarted tandemd's /health")
	return c
}
