package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Env is what `tandem lab env` prints: addresses, names and credentials.
type Env struct {
	Name      string `json:"name"`
	Dir       string `json:"dir"`
	Family    string `json:"family"` // ipv4 or ipv6
	Subnet    string `json:"subnet"`
	Domain    string `json:"domain"`
	ClusterIP string `json:"cluster_ip"`
	// ClusterPrefix is the cluster IP with the subnet's prefix length, as
	// assembly takes it.
	ClusterPrefix string `json:"cluster_prefix"`
	DNSName       string `json:"dns_name"`
	DNSServer     string `json:"dns_server"`
	ClientIP      string `json:"client_ip"`
	// Failover is the mode the lab was built for: manual or automatic.
	Failover string    `json:"failover"`
	Nodes    []EnvNode `json:"nodes"`
	// Witness is the quorum's third member, in an automatic-mode lab only.
	Witness *EnvWitness `json:"witness,omitempty"`
	// Etcd is the external etcd of a lab built with --etcd-external.
	Etcd     *EnvEtcd    `json:"etcd,omitempty"`
	Hosts    []EnvHost   `json:"hosts"`
	Postgres EnvPostgres `json:"postgres"`
	// Faults is what `lab power-off`, `partition`, `netem` and `pause`
	// have done and not yet undone, one line each.
	Faults []string `json:"faults"`
}

// EnvNode is one node as `lab env` shows it.
type EnvNode struct {
	Name  string `json:"name"`
	IP    string `json:"ip"`
	FQDN  string `json:"fqdn"`
	API   string `json:"api"`
	Token string `json:"token"` // empty until tandemd has started once
	Log   string `json:"log"`
	// PostgresPassword is this node's own superuser password; after
	// assembly both nodes have the primary's (Env.Postgres.Password).
	PostgresPassword string `json:"postgres_password"`
	// Watchdog is the node's watchdog device, the stand-in's socket, in an
	// automatic-mode lab; WatchdogLog is the stand-in's log.
	Watchdog    string `json:"watchdog,omitempty"`
	WatchdogLog string `json:"watchdog_log,omitempty"`
}

// EnvEtcd is the external etcd as `lab env` shows it: its client URLs
// (what --etcd takes), the lab's CA and each member's log.
type EnvEtcd struct {
	Endpoints []string          `json:"endpoints"`
	CA        string            `json:"ca"`
	Logs      map[string]string `json:"logs"`
}

// EnvWitness is the witness host as `lab env` shows it: where the console
// and the nodes reach it, and its admin token.
type EnvWitness struct {
	Name       string `json:"name"`
	IP         string `json:"ip"`
	FQDN       string `json:"fqdn"`
	API        string `json:"api"`
	Token      string `json:"token"` // empty until tandemd --witness has started once
	Log        string `json:"log"`
	PeerPort   int    `json:"peer_port"`
	ClientPort int    `json:"client_port"`
}

// EnvHost is any lab host, with the namespace `lab exec` enters.
type EnvHost struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	IP    string `json:"ip"`
	FQDN  string `json:"fqdn"`
	Netns string `json:"netns"`
	MAC   string `json:"mac"`
}

// EnvPostgres is how to reach PostgreSQL on the nodes.
type EnvPostgres struct {
	Port     int    `json:"port"`
	User     string `json:"user"`
	Password string `json:"password"` // node a's superuser password
}

// Env gathers the lab's environment; tokens and the password are read
// from the nodes' (and the witness's) state dirs.
func (l *Layout) Env() Env {
	e := Env{
		Name:          l.Name,
		Dir:           l.Dir,
		Family:        l.Family(),
		Subnet:        l.Subnet,
		Domain:        l.Domain,
		ClusterIP:     l.ClusterIP,
		ClusterPrefix: l.ClusterPrefix(),
		DNSName:       l.DNSName,
		DNSServer:     l.DNSServer,
		Failover:      l.Failover,
		Nodes:         []EnvNode{},
		Hosts:         []EnvHost{},
		Postgres:      EnvPostgres{Port: PostgresPort, User: PostgresUser},
		Faults:        []string{},
	}
	if f, err := l.LoadFaults(); err == nil {
		e.Faults = append(e.Faults, f.Summary()...)
	} else {
		e.Faults = append(e.Faults, err.Error())
	}
	for _, h := range l.Hosts {
		e.Hosts = append(e.Hosts, EnvHost{Name: h.Name, Role: h.Role, IP: h.IP, FQDN: h.FQDN, Netns: h.Netns, MAC: h.MAC})
		switch h.Role {
		case RoleClient:
			e.ClientIP = h.IP
		case RoleNode:
			wd, wdLog := "", ""
			if l.Automatic() {
				wd, wdLog = l.WatchdogPath(h.Name), l.WatchdogLogPath(h.Name)
			}
			e.Nodes = append(e.Nodes, EnvNode{
				Watchdog:         wd,
				WatchdogLog:      wdLog,
				Name:             h.Name,
				IP:               h.IP,
				FQDN:             h.FQDN,
				API:              APIURL(h),
				Token:            l.secret(h.Name, TokenFile),
				Log:              l.LogPath(h.Name),
				PostgresPassword: l.secret(h.Name, PostgresPasswordFile),
			})
		case RoleEtcd:
			if e.Etcd == nil {
				e.Etcd = &EnvEtcd{Endpoints: l.EtcdEndpoints(), CA: l.EtcdCAPath(), Logs: map[string]string{}}
			}
			e.Etcd.Logs[h.Name] = l.EtcdLogPath(h.Name)
		case RoleWitness:
			e.Witness = &EnvWitness{
				Name:       h.Name,
				IP:         h.IP,
				FQDN:       h.FQDN,
				API:        APIURL(h),
				Token:      l.secret(h.Name, TokenFile),
				Log:        l.LogPath(h.Name),
				PeerPort:   QuorumPeerPort,
				ClientPort: QuorumClientPort,
			}
		}
	}
	if nodes := l.Nodes(); len(nodes) > 0 {
		e.Postgres.Password = l.secret(nodes[0].Name, PostgresPasswordFile)
	}
	if e.Failover == "" {
		e.Failover = FailoverManual // a layout from before the mode was recorded
	}
	return e
}

// WriteText prints the environment for a person.
func (e Env) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s  (%s subnet %s, domain %s, %s failover, files in %s)\n\n", e.Name, e.Family, e.Subnet, e.Domain, e.Failover, e.Dir)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tIP\tNAME\tNAMESPACE\tMAC")
	for _, h := range e.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Role, h.IP, h.FQDN, h.Netns, h.MAC)
	}
	fmt.Fprintf(tw, "(cluster)\t\t%s\t%s\t(held by the primary; assemble with %s)\t\n", e.ClusterIP, e.DNSName, e.ClusterPrefix)
	tw.Flush()
	fmt.Fprintf(&b, "\nDNS server: %s\n", e.DNSServer)
	fmt.Fprintln(&b, "\nnode API:")
	for _, n := range e.Nodes {
		tok := n.Token
		if tok == "" {
			tok = "(not written yet)"
		}
		fmt.Fprintf(&b, "  %s  %s  token %s\n", n.Name, n.API, tok)
	}
	for i, n := range e.Nodes {
		if n.Watchdog == "" {
			continue
		}
		if i == 0 {
			fmt.Fprintln(&b, "\nwatchdog (a stand-in for the hardware: unfed once armed, it powers the node off):")
		}
		fmt.Fprintf(&b, "  %s  %s  log %s\n", n.Name, n.Watchdog, n.WatchdogLog)
	}
	if w := e.Witness; w != nil {
		tok := w.Token
		if tok == "" {
			tok = "(not written yet)"
		}
		fmt.Fprintf(&b, "\nwitness (tandemd --witness, quorum ports %d and %d):\n  %s  %s  token %s\n", w.PeerPort, w.ClientPort, w.Name, w.API, tok)
	}
	if e := e.Etcd; e != nil {
		fmt.Fprintf(&b, "\nexternal etcd (the quorum; Debian's etcd, TLS from the lab's CA %s):\n  --etcd %s\n", e.CA, strings.Join(e.Endpoints, ","))
	}
	pw := e.Postgres.Password
	if pw == "" {
		pw = "(not written yet)"
	}
	fmt.Fprintf(&b, "\nPostgreSQL: port %d, user %s, password %s\n", e.Postgres.Port, e.Postgres.User, pw)
	if len(e.Faults) > 0 {
		fmt.Fprintln(&b, "\nfaults (`tandem lab heal`, `power-on`, `resume` undo them):")
		for _, f := range e.Faults {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteShell prints the environment as shell assignments, for
// `eval "$(tandem lab env --shell)"`: TANDEM_LAB, TANDEM_TOKEN_A and
// TANDEM_TOKEN_B (one per node; TANDEM_TOKEN_W for the witness), and
// TANDEM_LAB_* for addresses (the cluster IP also with its prefix length),
// the failover mode and the PostgreSQL password.
func (e Env) WriteShell(w io.Writer) error {
	var b strings.Builder
	set := func(k, v string) { fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v)) }
	set("TANDEM_LAB", e.Name)
	set("TANDEM_LAB_DOMAIN", e.Domain)
	set("TANDEM_LAB_CLUSTER_IP", e.ClusterIP)
	set("TANDEM_LAB_CLUSTER_PREFIX", e.ClusterPrefix)
	set("TANDEM_LAB_DNS_NAME", e.DNSName)
	set("TANDEM_LAB_DNS_SERVER", e.DNSServer)
	set("TANDEM_LAB_CLIENT_IP", e.ClientIP)
	set("TANDEM_LAB_FAILOVER", e.Failover)
	for _, n := range e.Nodes {
		up := strings.ToUpper(n.Name)
		set("TANDEM_LAB_"+up+"_IP", n.IP)
		set("TANDEM_LAB_"+up+"_API", n.API)
		set("TANDEM_TOKEN_"+up, n.Token)
	}
	if w := e.Witness; w != nil {
		up := strings.ToUpper(w.Name)
		set("TANDEM_LAB_"+up+"_IP", w.IP)
		set("TANDEM_LAB_"+up+"_API", w.API)
		set("TANDEM_TOKEN_"+up, w.Token)
	}
	set("TANDEM_LAB_PG_PORT", fmt.Sprint(e.Postgres.Port))
	set("TANDEM_LAB_PG_USER", e.Postgres.User)
	set("TANDEM_LAB_PG_PASSWORD", e.Postgres.Password)
	_, err := io.WriteString(w, b.String())
	return err
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
