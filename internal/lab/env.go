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
	Etcd *EnvEtcd `json:"etcd,omitempty"`
	// CrossSubnet: the lab's hosts are in Segments, joined by the router
	// namespace Router; ClusterIP and ClusterPrefix are empty, and
	// DNSUpdate says how to move the cluster name.
	CrossSubnet bool          `json:"cross_subnet,omitempty"`
	Router      string        `json:"router,omitempty"`
	Segments    []Segment     `json:"segments,omitempty"`
	DNSUpdate   *EnvDNSUpdate `json:"dns_update,omitempty"`
	Hosts       []EnvHost     `json:"hosts"`
	Postgres    EnvPostgres   `json:"postgres"`
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

// EnvDNSUpdate is what a node needs to move the cluster name in a
// cross-subnet lab: the zone and its primary server (the lab's BIND), the
// TSIG key's name and algorithm, and each node's copy of the key (mode
// 0600, the key statement as tsig-keygen writes it).
type EnvDNSUpdate struct {
	Software  string            `json:"software"` // bind9
	Server    string            `json:"server"`
	Zone      string            `json:"zone"`
	KeyName   string            `json:"key_name"`
	Algorithm string            `json:"algorithm"`
	KeyFiles  map[string]string `json:"key_files"` // node → path
	Config    string            `json:"config"`    // named.conf
	Log       string            `json:"log"`
}

// EnvWitness is the witness host as `lab env` shows it: where the console
// and the nodes reach it, and its admin token.
type EnvWitness struct {
	Name       string `json:"name"`
	IP         string `json:"ip"`
	FQDN       string `json:"fqdn"`
	API        string `json:"api"`
	Token      string `json:"token"` // empty until the witness has started once
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
	// Subnet and Gateway: the host's segment and default route, in a
	// cross-subnet lab only.
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"`
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
		e.Hosts = append(e.Hosts, EnvHost{Name: h.Name, Role: h.Role, IP: h.IP, FQDN: h.FQDN, Netns: h.Netns, MAC: h.MAC, Subnet: h.Subnet, Gateway: h.Gateway})
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
	if l.CrossSubnet {
		e.CrossSubnet, e.Router, e.Segments = true, l.RouterNetns, l.Segments
		u := &EnvDNSUpdate{
			Software: "bind9", Server: l.DNSServer, Zone: l.Domain,
			KeyName: l.TSIGKeyName(), Algorithm: TSIGAlgorithm, KeyFiles: map[string]string{},
			Config: l.NamedConfPath(), Log: l.DNSLogPath(),
		}
		for _, h := range l.Nodes() {
			u.KeyFiles[h.Name] = l.DNSKeyPath(h.Name)
		}
		e.DNSUpdate = u
	}
	if e.Failover == "" {
		e.Failover = FailoverManual // a layout from before the mode was recorded
	}
	return e
}

// WriteText prints the environment for a person.
func (e Env) WriteText(w io.Writer) error {
	var b strings.Builder
	shape := "subnet " + e.Subnet
	if e.CrossSubnet {
		shape = "cross-subnet, subnets from " + e.Subnet
	}
	fmt.Fprintf(&b, "lab %s  (%s %s, domain %s, %s failover, files in %s)\n\n", e.Name, e.Family, shape, e.Domain, e.Failover, e.Dir)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	if e.CrossSubnet {
		fmt.Fprintln(tw, "HOST\tROLE\tIP\tNAME\tNAMESPACE\tMAC\tSUBNET\tGATEWAY")
		for _, h := range e.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Role, h.IP, h.FQDN, h.Netns, h.MAC, h.Subnet, h.Gateway)
		}
		fmt.Fprintf(tw, "(cluster)\t\t-\t%s\t(no cluster IP: the primary points the name at itself by dynamic DNS)\t\t\t\n", e.DNSName)
	} else {
		fmt.Fprintln(tw, "HOST\tROLE\tIP\tNAME\tNAMESPACE\tMAC")
		for _, h := range e.Hosts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Role, h.IP, h.FQDN, h.Netns, h.MAC)
		}
		fmt.Fprintf(tw, "(cluster)\t\t%s\t%s\t(held by the primary; assemble with %s)\t\n", e.ClusterIP, e.DNSName, e.ClusterPrefix)
	}
	tw.Flush()
	if e.CrossSubnet {
		fmt.Fprintf(&b, "\nrouter %s:\n", e.Router)
		for _, s := range e.Segments {
			fmt.Fprintf(&b, "  %s  %s on %s (bridge %s), subnet %s of %s\n", s.RouterIface, s.Gateway, s.RouterMAC, s.Bridge, s.Subnet, s.Name)
		}
	}
	fmt.Fprintf(&b, "\nDNS server: %s\n", e.DNSServer)
	if u := e.DNSUpdate; u != nil {
		fmt.Fprintf(&b, "  BIND 9 (%s, log %s); updates to zone %s signed with TSIG key %s (%s), key file on each node:\n", u.Config, u.Log, u.Zone, u.KeyName, u.Algorithm)
		for _, n := range e.Nodes {
			fmt.Fprintf(&b, "    %s  %s\n", n.Name, u.KeyFiles[n.Name])
		}
	}
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
		fmt.Fprintf(&b, "\nwitness (tandem-witness, quorum ports %d and %d):\n  %s  %s  token %s\n", w.PeerPort, w.ClientPort, w.Name, w.API, tok)
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
// the failover mode and the PostgreSQL password; in a cross-subnet lab
// also TANDEM_LAB_CROSS_SUBNET=1, the zone, the TSIG key's name and
// algorithm and each node's key file (TANDEM_LAB_A_DNS_KEY_FILE).
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
	if u := e.DNSUpdate; u != nil {
		set("TANDEM_LAB_CROSS_SUBNET", "1")
		set("TANDEM_LAB_DNS_ZONE", u.Zone)
		set("TANDEM_LAB_DNS_KEY_NAME", u.KeyName)
		set("TANDEM_LAB_DNS_KEY_ALGORITHM", u.Algorithm)
		for _, n := range e.Nodes {
			set("TANDEM_LAB_"+strings.ToUpper(n.Name)+"_DNS_KEY_FILE", u.KeyFiles[n.Name])
		}
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
