//go:build e2e

package e2e

// TestDeploy follows docs/deploy.md literally in the lab, so that the
// document cannot rot: every command block the document marks is run, in
// the document's order, on the lab host it names, and what the document
// promises is checked at the end.
//
// The marks. A fenced block whose info string holds {deploy-test WORDS} is
// the test's; GitHub shows only the language before it. WORDS are:
//
//	on=HOSTS      run the block on these lab hosts, in this order: a, b (the
//	              nodes, as root), w (the witness of step 12, as root),
//	              client (the operator's machine, which is also where the
//	              application connects from) and dns (the zone's primary
//	              server of step 13, as root). Each run is `bash` with
//	              `set -e` on a script of the block's text, in the host's
//	              root directory or the operator's working directory,
//	              through `tandem lab exec`.
//	vars          the site's values (shell assignments). Not run: the test
//	              gives every block the lab's values for exactly the names
//	              this block assigns, in the environment, and fails when the
//	              document assigns a name it does not know. Step 13 has one
//	              of its own (variant=cross-subnet): the DNS server's
//	              address and the zone, the lab's BIND and its domain.
//	zone          zone-file lines (A, AAAA, PTR). The test maps each name
//	              and address from the document's example values (those of
//	              the vars block) to the lab's, and makes the lab's DNS serve
//	              it with `tandem lab dns set/ptr` unless it already does.
//	              The lab's zone already has a, b, w and db forward and
//	              reverse, so normally nothing changes; the test logs what
//	              it finds. Step 1's block must give a, b and db both ways;
//	              every name of a later block (w's) both ways too. In the
//	              cross-subnet run the cluster name's lines are left out,
//	              as step 13 says (no record for it by hand: tandemd
//	              writes it), and the lab's zone has none.
//	named         (step 13) named.conf statements for the zone's primary
//	              server: an include of the key file and the zone with its
//	              update-policy. The lab's DNS server in the cross-subnet
//	              lab is BIND already, with named.conf of the lab's making;
//	              the test puts the document's statements into it in place
//	              of the lab's own statement for its zone (with the
//	              document's example zone read as the lab's domain, the
//	              zone file as the lab's, the key file's path in host
//	              dns's root) and restarts named (`lab dns reset`, which
//	              changes no record). So BIND takes the updates the
//	              document's policy allows, signed with the key the
//	              document's tsig-keygen made on host dns, and nothing else:
//	              the lab's own key no longer may update anything. This
//	              rather than mapping step 13 onto the lab's BIND (as zone
//	              maps step 1 onto the lab's records) so that the key and
//	              policy the nodes then use are the document's.
//	install       (with on=) replaced, see deviation 1.
//	start         (with on=) replaced, see deviation 2.
//	save=FILE     the block's stdout goes into FILE ($NODE_NAME expanded) in
//	              the operator's working directory, mode 0600: the copy the
//	              document tells the operator to make from node to console.
//	answer=y      the block runs on a terminal (script(1)) and the test types
//	              y when the console asks [y/N], as the document says to.
//	id=NAME       the test checks the block's output afterwards. The block
//	              id=replicated only reads what the application wrote, on
//	              the secondary; it is run again until the write shows (up
//	              to 20 s), as replication takes a moment. So is
//	              id=automatic (`tandem status` after the change to
//	              automatic failover) until it shows the quorum, which the
//	              nodes look at every second.
//	variant=V     only in the run of variant V (the document's "adopting the
//	              database the host already has" is variant adopt; step 13,
//	              the nodes in different subnets, is cross-subnet).
//	not=V         not in the run of variant V: the blocks of steps 1-12
//	              that step 13 replaces (the check of the cluster name's
//	              records, the preflight and assembly with the cluster
//	              IP). Several variants with commas.
//	step=N        (with variant=) the block is written in step 13 but
//	              changes step N: the run runs it within step N, in the
//	              place of the first of step N's blocks it leaves out
//	              (not=), or after step N's last block if it leaves out
//	              none (deployPlan); such blocks keep the document's order
//	              among themselves. Step 13's libpq multi-host connection
//	              runs after step 11's switchover, so that it shows libpq
//	              passing over the read-only a to the second host, b.
//	copy=H:SRC:DST before the block runs on each of its hosts, the test
//	              copies file SRC of lab host H to DST on that host, as the
//	              operator does with scp (step 13's key file, from the DNS
//	              server to /etc/tandem/dns-update.key on the nodes): see
//	              deviation 3.
//
// The lab is built with the witness host w (`lab up --failover automatic
// --no-tandemd`): the hosts and DNS only, no tandemd anywhere; the
// document installs and starts everything, the witness's too.
//
// The test runs the document three times: "new" (fresh hosts; tandemd
// initialises the primary's database) and "adopt" (hosts that had
// Debian's PostgreSQL 15 before: each node first gets a cluster "main",
// made with pg_createcluster, a's with data; the blocks marked
// variant=adopt drop b's and move a's under tandemd) in parallel, then
// "cross-subnet" (step 13) on its own, so that no more than two labs
// share the machine: a new database as in "new", in the cross-subnet lab
// (`lab up --cross-subnet --failover automatic --no-tandemd`: a and b in
// two subnets joined by a router, the client, the DNS server and w in a
// third; BIND as the DNS server; no cluster IP), with step 13's blocks in
// the steps they change and the ones they replace left out. Steps 1-12
// run there too, the witness of step 12 included (w sits in the client's
// subnet and reaches both nodes through the router). Host dns gets a
// root directory like the nodes' (with BIND's /etc/bind, as installing
// bind9 makes it), for step 13's tsig-keygen.
//
// Where the test cannot do what the document says, and what it does:
//
//  1. Installing. `apt install` (or `dpkg -i`) into this machine's root
//     would install the package once, not once per lab host, and would
//     leave it on the machine. So each node, and the witness, gets a root
//     directory of its own, the package (built with the packaging code) is
//     extracted into it with `dpkg-deb -x`, and the test makes the
//     directories the postinst makes (/var/lib/tandem 0711,
//     /var/lib/tandem/state 0700) and the one tandemd's unit's
//     RuntimeDirectory= makes (/run/tandem). The block's text is
//     only checked to be an apt install of the .deb. Installing PostgreSQL
//     would put Debian's createcluster.conf in place: the test copies this
//     machine's (its include_dir relocated), refuses one the document
//     wrote itself (apt would then keep the operator's file in place of
//     Debian's), and asks pg_conftool, as PostgreSQL's postinst does,
//     whether it would create the cluster main: the answer must be off.
//     Everything of a host lives under its root, so in the text of every
//     block run on a node, the witness or host dns the node paths (the
//     package's: /etc/tandem, /usr/bin/tandem[d], /usr/bin/tandem-witness,
//     the units, /var/lib/tandem, /var/lib/tandem-witness, /run/tandem;
//     PostgreSQL's: /etc/postgresql,
//     /etc/postgresql-common, /var/lib/postgresql; /etc/nftables.conf and
//     /dev/watchdog; BIND's /etc/bind and /var/lib/bind, for host dns of
//     step 13) get the root put in front of them (relocateText), and
//     the host's PATH starts with the root's /usr/bin. tandemd itself is
//     started with TANDEMD_STATE_DIR (and on a node
//     TANDEMD_POSTGRES_DATA_DIR, TANDEMD_POSTGRES_SOCKET_DIR and
//     TANDEMD_WATCHDOG_DEVICE, deviation 5) pointing under the root where
//     the config file (as the document left it) does not already; a path
//     the test cannot relocate fails it rather than reach this machine's.
//     The host blocks get PG_CLUSTER_CONF_ROOT, which relocates Debian's
//     /etc/postgresql for pg_ctlcluster and friends (and keeps them from
//     handing anything to this machine's systemd), and TANDEMD_STATE_DIR
//     (the node's, or the one the witness's config file names), so that
//     `tandemd --check` looks at the host's state dir.
//  2. Starting. The lab has no systemd: for `systemctl enable --now UNIT`
//     (tandemd on the nodes, tandem-witness on the witness) the test runs
//     the packaged unit's ExecStart= (with its Environment=, relocated as
//     in 1) in the host's namespace, detached in a session of its own,
//     output appended to ROOT/UNIT.log (the journal), as root, from /.
//     Before, it makes the unit's StateDirectory= with its mode, as
//     systemd would, and checks that under ProtectSystem=strict the
//     config's state_dir is one the unit lets tandemd write.
//  3. Copying tokens and fingerprints from the nodes and the witness to
//     the operator's machine (save=), step 13's key file from the DNS
//     server to the nodes (copy=), and typing y (answer=): see the marks.
//  4. The firewall. `nft -f` runs in the host's network namespace, so the
//     ruleset is the lab host's alone and every later step goes through
//     it; `systemctl enable nftables` (at boot) is not run. ADMIN_NET and
//     APP_NET are the operator's machine's address.
//  5. The watchdog (step 12). A node's watchdog.device, /dev/watchdog,
//     is relocated into its root, where there is none: a primary in
//     automatic mode then runs without a watchdog, as the document says
//     of a host without one, instead of arming this machine's (which
//     would reset it whenever a test's tandemd stopped feeding it).
//
// What the document promises is checked where it promises it: after each
// firewall block, that the hosts it ran on drop what it does not let in (a
// refused connection would mean no rule dropped it) and let in what it
// does; after id=status and id=switched, the healthy cluster with a, then
// b, as primary; after id=automatic, still healthy, in automatic mode,
// the leader key held by b, the three members healthy and a ready to fail
// over by itself; at the end, the outputs of the blocks with an id. In the
// cross-subnet run (step 13) the healthy cluster has the DNS endpoint and
// no cluster IP, the name answered with the primary's node IP by the
// zone's server and the console's resolver; after id=status and
// id=switched the lab's BIND, asked from the client, answers the name with
// a's, then b's, node IP alone; status shows `endpoint dns: NAME`; the
// application's writes through the name are answered on a's, then b's,
// node IP; and the write through both node IPs (id=multihost) on b's.
//
// Cleanup: `lab down` (registered by upLab) stops tandemd (which stops
// PostgreSQL), the witness and everything else in the lab's namespaces;
// the roots live in the test's temporary directory, made 0755 so that
// postgres can reach its data directory; the test checks that no process
// refers to them afterwards.

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/packaging"
)

// deployVarNames are the variables the test knows how to fill with the
// lab's values; the vars block must assign exactly these.
var deployVarNames = []string{"A_HOST", "A_IP", "B_HOST", "B_IP", "CLUSTER_NAME", "CLUSTER_IP", "PREFIX", "W_HOST", "W_IP", "APP_PASSWORD", "ADMIN_NET", "APP_NET", "NODE_NAME", "NODE_IP"}

// deployDNSVarNames are the variables of step 13's vars block (the DNS
// endpoint's), which the test fills with the lab's BIND server and zone.
var deployDNSVarNames = []string{"DNS_IP", "DNS_ZONE"}

// deployCrossSubnet is the variant that follows step 13: the nodes in
// different subnets, the DNS name as the endpoint.
const deployCrossSubnet = "cross-subnet"

// deployNamed are the vars that name a host (in the zone blocks) with
// the address it has.
var deployNamed = [][2]string{{"A_HOST", "A_IP"}, {"B_HOST", "B_IP"}, {"CLUSTER_NAME", "CLUSTER_IP"}, {"W_HOST", "W_IP"}}

// deployUnits are the packaged units a start block may name.
var deployUnits = map[string]string{"tandemd": packaging.UnitPath, "tandem-witness": packaging.WitnessUnitPath}

// deployGreeting is what the document's application writes.
const deployGreeting = "hello through the cluster name"

// debianCreateclusterConf is Debian's createcluster.conf, as installing
// PostgreSQL puts it on a host; the install step copies it into each
// node's root, as apt would.
const debianCreateclusterConf = "/etc/postgresql-common/createcluster.conf"

func TestDeploy(t *testing.T) {
	needRoot(t)
	blocks := parseDeployDoc(t, deployDoc)
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("tandem is packaged for amd64 and arm64, not %s", runtime.GOARCH)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("the document's step 2 loads an nftables ruleset, which needs nft: install nftables (scripts/deps.sh does): %v", err)
	}
	bin := binDir(t)
	start := time.Now()
	deb, err := packaging.Build(packaging.Deb{
		Version: "0.0.0-e2e",
		Arch:    runtime.GOARCH,
		Tandemd: filepath.Join(bin, "tandemd"),
		Witness: filepath.Join(bin, "tandem-witness"),
		Tandem:  filepath.Join(bin, "tandem"),
	}, t.TempDir())
	if err != nil {
		t.Fatalf("building the package: %v", err)
	}
	t.Logf("built %s in %s", filepath.Base(deb), time.Since(start).Round(time.Millisecond))

	variants := []string{"new", "adopt", deployCrossSubnet}
	for _, b := range blocks {
		for _, k := range []string{"variant", "not"} {
			for _, v := range strings.Split(b.attrs[k], ",") {
				if b.has(k) && !slices.Contains(variants, v) {
					t.Fatalf("%s: the test runs the variants %v, not %q", b, variants, v)
				}
			}
		}
	}
	// new and adopt in parallel; the cross-subnet lab (a router, BIND)
	// after them, so that no more than two labs share the machine.
	t.Run("parallel", func(t *testing.T) {
		for _, variant := range variants[:2] {
			t.Run(variant, func(t *testing.T) {
				t.Parallel()
				d := newDeployment(t, deb, variant)
				d.follow(blocks)
				d.check()
			})
		}
	})
	t.Run(deployCrossSubnet, func(t *testing.T) {
		d := newDeployment(t, deb, deployCrossSubnet)
		d.follow(blocks)
		d.check()
	})
}

// deployment is one run of the document in one lab.
type deployment struct {
	t       *testing.T
	variant string
	deb     string
	lab     *testLab
	env     labEnv
	dir     string            // the test's directory (0755)
	roots   map[string]string // node or witness → its root directory
	op      string            // the operator's working directory
	vars    map[string]string // the site's values, the lab's
	node    map[string]map[string]string
	ns      map[string]string // host → network namespace
	outputs map[string]string // id → stdout of that block
	example map[string]string // the document's example value → the lab's
	zoned   map[string]bool   // the host vars (deployNamed) the zone blocks gave
	step    int
	// exampleZone is the document's example zone (step 13's DNS_ZONE).
	exampleZone string
}

func newDeployment(t *testing.T, deb, variant string) *deployment {
	d := &deployment{t: t, variant: variant, deb: deb, outputs: map[string]string{}, zoned: map[string]bool{}}
	// Before upLab, so that these clean-ups run after `lab down`.
	d.dir = t.TempDir()
	for _, p := range []string{filepath.Dir(d.dir), d.dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, left := range deployProcesses(d.dir) {
			t.Errorf("left behind after lab down: %s", left)
		}
	})
	if variant == "adopt" {
		d.needDistributionTools()
	}

	// With the witness host w (step 12), whose tandemd, like the nodes',
	// the test starts as the document says; step 13's in the cross-subnet
	// lab (a and b in subnets of their own, BIND as the DNS server).
	flags := []string{"--no-tandemd", "--failover", "automatic"}
	if variant == deployCrossSubnet {
		flags = append(flags, "--cross-subnet")
	}
	d.lab = upLab(t, flags...)
	d.env = d.lab.env
	if d.env.Witness == nil {
		t.Fatalf("lab up %s: the lab has no witness host (lab env: %+v)", strings.Join(flags, " "), d.env)
	}
	if cross := d.env.DNSUpdate != nil && d.env.DNSUpdate.Software == "bind9"; cross != (variant == deployCrossSubnet) || cross && d.env.ClusterIP != "" {
		t.Fatalf("lab up %s: cluster IP %q, dns_update %+v; the cross-subnet lab has BIND and no cluster IP, the others dnsmasq and one", strings.Join(flags, " "), d.env.ClusterIP, d.env.DNSUpdate)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"a", "b", "w"} {
				logs, _ := filepath.Glob(filepath.Join(d.roots[n], "*.log"))
				for _, p := range logs {
					t.Logf("=== host %s: %s (the journal)\n%s", n, p, tailOf(p, 150))
				}
			}
		}
	})

	d.roots = map[string]string{"a": filepath.Join(d.dir, "a"), "b": filepath.Join(d.dir, "b"), "w": filepath.Join(d.dir, "w")}
	d.op = filepath.Join(d.dir, "operator")
	// A host's root has what a fresh Debian host has before the document
	// starts: /etc and root's home.
	dirs := []string{filepath.Join(d.roots["a"], "etc"), filepath.Join(d.roots["b"], "etc"), filepath.Join(d.roots["w"], "etc"), d.op, filepath.Join(d.dir, "scripts")}
	if variant == deployCrossSubnet {
		// The zone's primary server (step 13) has BIND installed: its
		// /etc/bind, where the document makes the key.
		d.roots["dns"] = filepath.Join(d.dir, "dns")
		dirs = append(dirs, filepath.Join(d.roots["dns"], "etc/bind"))
	}
	for _, p := range dirs {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.ns = map[string]string{}
	for _, h := range d.env.Hosts {
		d.ns[h.Name] = h.Netns
	}
	ip := map[string]string{}
	for _, n := range d.env.Nodes {
		ip[n.Name] = n.IP
	}
	_, prefix, ok := strings.Cut(d.env.ClusterPrefix, "/")
	if variant == deployCrossSubnet {
		ok = d.env.ClusterPrefix == "" // no cluster IP, no prefix
	}
	if !ok || ip["a"] == "" || ip["b"] == "" {
		t.Fatalf("lab env: cluster prefix %q, nodes %v", d.env.ClusterPrefix, ip)
	}
	d.vars = map[string]string{
		"A_HOST": "a." + d.env.Domain, "A_IP": ip["a"],
		"B_HOST": "b." + d.env.Domain, "B_IP": ip["b"],
		"CLUSTER_NAME": d.env.DNSName, "CLUSTER_IP": d.env.ClusterIP, "PREFIX": prefix,
		"W_HOST": d.env.Witness.FQDN, "W_IP": d.env.Witness.IP,
		"APP_PASSWORD": deployPassword(t),
		// The operator's machine is also where the application runs.
		"ADMIN_NET": hostPrefix(d.env.ClientIP), "APP_NET": hostPrefix(d.env.ClientIP),
		// Step 13's: the zone's primary server, the zone.
		"DNS_IP": d.env.DNSServer, "DNS_ZONE": d.env.Domain,
	}
	d.node = map[string]map[string]string{
		"a": {"NODE_NAME": "a", "NODE_IP": ip["a"]},
		"b": {"NODE_NAME": "b", "NODE_IP": ip["b"]},
	}

	// The operator's machine has the console from the package on its PATH.
	out, err := runLocal("dpkg-deb", "-x", deb, filepath.Join(d.op, "pkg"))
	if err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	if variant == "adopt" {
		d.makeDistributionCluster("a", true)
		d.makeDistributionCluster("b", false)
	}
	return d
}

// plan is the blocks of the document that variant runs, in the order it
// runs them: the document's, except that a block with step=N (step 13's,
// which change earlier steps) runs within step N, in the place of the
// first of step N's blocks that the variant leaves out (not=), or after
// step N's last block when it leaves out none. Among themselves such
// blocks keep the document's order.
func deployPlan(blocks []deployBlock, variant string) []deployBlock {
	moved := map[int][]deployBlock{}
	for _, b := range blocks {
		if b.has("step") && b.runsIn(variant) {
			moved[b.runStep()] = append(moved[b.runStep()], b)
		}
	}
	var out []deployBlock
	flush := func(step int) {
		out = append(out, moved[step]...)
		delete(moved, step)
	}
	for i, b := range blocks {
		if b.has("step") {
			continue
		}
		// Steps with no block of their own, before this one.
		for _, k := range slices.Sorted(maps.Keys(moved)) {
			if k < b.step {
				flush(k)
			}
		}
		if !b.runsIn(variant) {
			flush(b.step)
			continue
		}
		out = append(out, b)
		last := true
		for _, c := range blocks[i+1:] {
			if !c.has("step") {
				last = c.step != b.step
				break
			}
		}
		if last {
			flush(b.step)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(moved)) {
		flush(k)
	}
	return out
}

// follow runs the document's blocks in the order deployPlan gives.
func (d *deployment) follow(blocks []deployBlock) {
	t := d.t
	for _, b := range deployPlan(blocks, d.variant) {
		if b.has("step") {
			t.Logf("%s: a block of step %d, run within step %d", b, b.step, b.runStep())
		}
		switch {
		case b.has("vars"):
			d.checkVars(b)
		case b.has("zone"):
			d.zone(b)
		case b.has("named"):
			d.named(b)
		case b.has("install"):
			if !strings.Contains(b.text, "apt install") || !strings.Contains(b.text, ".deb") {
				t.Fatalf("%s: the test replaces this block by extracting the package, but it no longer says `apt install ….deb`:\n%s", b, b.text)
			}
			for _, h := range b.on() {
				d.install(b, h)
			}
		case b.has("start"):
			unit, ok := strings.CutPrefix(strings.TrimSpace(b.text), "systemctl enable --now ")
			if _, known := deployUnits[unit]; !ok || !known {
				t.Fatalf("%s: the test replaces this block by running the ExecStart of the unit it starts, but it is no `systemctl enable --now UNIT` of a packaged unit (%v):\n%s", b, slices.Sorted(maps.Keys(deployUnits)), b.text)
			}
			for _, h := range b.on() {
				d.startService(b, h, unit)
			}
		default:
			for _, h := range b.on() {
				d.runBlock(b, h)
			}
			d.afterBlock(b)
		}
	}
	if d.example == nil {
		t.Fatalf("docs/deploy.md has no {deploy-test vars} block")
	}
	for _, k := range deployNamed {
		if !d.zoned[k[0]] && !(k[0] == "CLUSTER_NAME" && d.variant == deployCrossSubnet) {
			t.Errorf("no zone block gives %s (%s) its records, which the document's commands rely on", k[0], d.vars[k[0]])
		}
	}
}

// afterBlock checks what the document promises right after block b.
func (d *deployment) afterBlock(b deployBlock) {
	switch {
	case b.attrs["id"] == "status":
		d.checkHealthy("a")
		d.checkName("a")
	case b.attrs["id"] == "switched":
		d.checkHealthy("b")
		d.checkName("b")
	case b.attrs["id"] == "automatic":
		// Step 12 comes after step 11's switchover: b is primary.
		d.checkHealthy("b")
		d.checkAutomatic("b")
	case strings.Contains(b.text, "nft -f /etc/nftables.conf"):
		d.checkFirewall(b)
	}
}

// checkAutomatic waits for what step 12 promises once the mode changed:
// the cluster in automatic mode, the leader key held by primary, the
// quorum's three members healthy, and the secondary ready to fail over.
func (d *deployment) checkAutomatic(primary string) {
	members := []string{"a", "b", d.env.Witness.Name}
	eventually(d.t, "the cluster in automatic failover mode with "+primary+" holding the leader key", 20*time.Second, func() (bool, string) {
		out, errOut, code := d.run(deployRun{host: "client", env: d.hostEnv("client"), argv: []string{"tandem", "status", "-o", "json"}, timeout: time.Minute})
		s, err := parseDeployStatus(out)
		if code != 0 || err != nil {
			return false, fmt.Sprintf("tandem status -o json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		why := s.automatic(primary, members)
		return why == "", why
	})
}

// checkName: with the DNS endpoint (step 13), the lab's BIND, asked from
// the operator's machine, answers the cluster name with primary's node IP
// alone (the primary's update, not the lab's zone: it has no record for
// the name).
func (d *deployment) checkName(primary string) {
	if d.variant != deployCrossSubnet {
		return
	}
	name, want := d.vars["CLUSTER_NAME"], d.vars[strings.ToUpper(primary)+"_IP"]
	eventually(d.t, fmt.Sprintf("%s answers %s with %s's node IP %s", d.env.DNSServer, name, primary, want), 10*time.Second, func() (bool, string) {
		a, err := d.lab.lookupFrom("client", d.env.DNSServer, name)
		if err != nil {
			return false, err.Error()
		}
		return len(a.Addrs) == 1 && a.Addrs[0].String() == want, fmt.Sprintf("it answers %v", a.Addrs)
	})
	d.t.Logf("the lab's BIND answers %s with %s (%s), asked from the client", name, want, primary)
}

// endpointIP is the address the application's connection through the
// cluster name is answered on while primary is primary: the cluster IP,
// or with the DNS endpoint (step 13) the primary's node IP.
func (d *deployment) endpointIP(primary string) string {
	if d.variant == deployCrossSubnet {
		return d.vars[strings.ToUpper(primary)+"_IP"]
	}
	return d.vars["CLUSTER_IP"]
}

// checkHealthy waits for the healthy cluster the document describes, with
// primary as primary, from the console's JSON (synchronized may take a
// moment after assembly and after a switchover, as the document says).
func (d *deployment) checkHealthy(primary string) {
	primaryIP := ""
	if d.variant == deployCrossSubnet {
		primaryIP = d.endpointIP(primary)
	}
	eventually(d.t, "the cluster is healthy with "+primary+" as primary", 20*time.Second, func() (bool, string) {
		out, errOut, code := d.run(deployRun{host: "client", env: d.hostEnv("client"), argv: []string{"tandem", "status", "-o", "json"}, timeout: time.Minute})
		s, err := parseDeployStatus(out)
		if code != 0 || err != nil {
			return false, fmt.Sprintf("tandem status -o json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		why := s.healthy(d.vars["CLUSTER_NAME"], primary, primaryIP)
		return why == "", why + "\n" + out
	})
}

// checkFirewall proves the rulesets that block b loaded are in force: a
// connection to a port no rule opens gets no answer at all (dropped)
// where, without the ruleset, the host would refuse it at once; what the
// document lets in is let through (refused where nothing listens yet, as
// no sshd runs in the lab). On the nodes: ssh from the operator's machine
// but not from the other node, and the quorum ports (step 12) from the
// other node and the witness once the ruleset has them, never from the
// operator's machine. On the witness: ssh and the API from the operator's
// machine, the quorum ports from the nodes only.
func (d *deployment) checkFirewall(b deployBlock) {
	t := d.t
	type probe struct {
		from, to string
		port     int
		dropped  bool
	}
	var probes []probe
	for _, h := range b.on() {
		root := d.roots[h]
		if root == "" {
			t.Fatalf("%s loads a ruleset on %s, which has no firewall of its own in the lab", b, h)
		}
		rules, err := os.ReadFile(relocateText(root, "/etc/nftables.conf"))
		if err != nil {
			t.Fatalf("%s: the ruleset on %s: %v", b, h, err)
		}
		quorum := strings.Contains(string(rules), "7410, 7411")
		switch h {
		case "a", "b":
			to, other := strings.ToUpper(h)+"_IP", map[string]string{"a": "b", "b": "a"}[h]
			probes = append(probes,
				probe{"client", to, 9, true},
				probe{"client", to, 22, false},
				probe{other, to, 22, true},
				probe{"w", to, 7410, !quorum},
				probe{other, to, 7411, !quorum},
				probe{"client", to, 7410, true})
		case "w":
			probes = append(probes,
				probe{"client", "W_IP", 9, true},
				probe{"client", "W_IP", 22, false},
				probe{"client", "W_IP", 7400, false},
				probe{"a", "W_IP", 7410, false},
				probe{"b", "W_IP", 7411, false},
				probe{"client", "W_IP", 7411, true},
				probe{"a", "W_IP", 7400, true})
		}
	}
	// At once: each dropped one waits out its 3 s.
	type result struct {
		out, errOut string
		code        int
	}
	results := make([]result, len(probes))
	var wg sync.WaitGroup
	for i, c := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, errOut, code := d.run(deployRun{host: c.from, env: d.hostEnv(c.from), timeout: time.Minute,
				argv: []string{"timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", d.vars[c.to], c.port)}})
			results[i] = result{out, errOut, code}
		}()
	}
	wg.Wait()
	for i, c := range probes {
		r := results[i]
		// Let through: refused (nothing listens) or connected.
		through := r.code == 0 || strings.Contains(r.errOut, "refused")
		switch {
		case c.dropped && r.code != 124:
			t.Errorf("%s: the firewall should drop a connection from %s to %s:%d, but it was answered (exit %d): %s%s", b, c.from, d.vars[c.to], c.port, r.code, r.out, r.errOut)
		case !c.dropped && !through:
			t.Errorf("%s: the firewall should let a connection from %s to %s:%d through: exit %d: %s%s", b, c.from, d.vars[c.to], c.port, r.code, r.out, r.errOut)
		default:
			t.Logf("firewall: %s → %s:%d %s, as it should", c.from, d.vars[c.to], c.port, map[bool]string{true: "dropped", false: "let through"}[c.dropped])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// hostPrefix is an address as a prefix of its own (a /32 or /128).
func hostPrefix(ip string) string {
	if strings.Contains(ip, ":") {
		return ip + "/128"
	}
	return ip + "/32"
}

// checkVars makes sure the test gives every block what the vars block
// asks the operator to set, and remembers the document's example values
// to read the zone block with.
func (d *deployment) checkVars(b deployBlock) {
	names, example := parseDeployVars(d.t, b)
	if b.attrs["variant"] == deployCrossSubnet {
		// Step 13's: the DNS server and the zone, after step 0's.
		if !slices.Equal(sortedCopy(names), sortedCopy(deployDNSVarNames)) || d.example == nil {
			d.t.Fatalf("%s assigns %v after step 0's vars block; the test fills in %v: teach newDeployment the new ones", b, names, deployDNSVarNames)
		}
		d.exampleZone = example["DNS_ZONE"]
		return
	}
	if !slices.Equal(sortedCopy(names), sortedCopy(deployVarNames)) {
		d.t.Fatalf("%s assigns %v; the test fills in %v: teach newDeployment the new ones", b, names, deployVarNames)
	}
	d.example = map[string]string{}
	for _, k := range deployNamed {
		for _, v := range k {
			d.example[strings.ToLower(example[v])] = d.vars[v]
		}
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// zone makes the lab's DNS serve the zone block's records.
func (d *deployment) zone(b deployBlock) {
	t := d.t
	if d.example == nil {
		t.Fatalf("%s comes before the vars block, whose example values it is read with", b)
	}
	recs := parseDeployZone(t, b, d.example)
	if d.variant == deployCrossSubnet {
		// Step 13: no record for the cluster name by hand; tandemd
		// writes it.
		recs = slices.DeleteFunc(recs, func(r deployRecord) bool {
			if r.name == d.vars["CLUSTER_NAME"] {
				t.Logf("%s: %s %s left out, as step 13 says (tandemd writes the cluster name)", b, r.kind, r.name)
				return true
			}
			return false
		})
	}
	// The first zone block (step 1) must give the nodes and the cluster
	// name both directions, which the preflight needs; a later one (the
	// witness's, step 12), each name it has, both directions too.
	first := len(d.zoned) == 0
	for _, k := range deployNamed {
		name, ip := d.vars[k[0]], d.vars[k[1]]
		var fwd, rev, any bool
		for _, r := range recs {
			fwd = fwd || r.kind != "PTR" && r.name == name && r.ip == ip
			rev = rev || r.kind == "PTR" && r.name == name && r.ip == ip
			any = any || r.name == name || r.ip == ip
		}
		if !any && (!first || k[0] == "W_HOST") || k[0] == "CLUSTER_NAME" && d.variant == deployCrossSubnet {
			continue
		}
		if !fwd || !rev {
			t.Errorf("%s: the zone lines give %s (%s) forward %v, reverse %v; the preflight needs both", b, k[0], k[1], fwd, rev)
		}
		d.zoned[k[0]] = true
	}
	zone := d.labZone()
	for _, r := range recs {
		if r.kind == "PTR" {
			if slices.Contains(zone.Reverse[r.ip], r.name) {
				t.Logf("%s: the lab's DNS already has PTR %s → %s", b, r.ip, r.name)
				continue
			}
			d.labDNS("ptr", r.ip, r.name)
		} else {
			if slices.Contains(zone.Forward[r.name], r.ip) {
				t.Logf("%s: the lab's DNS already has %s %s → %s", b, r.kind, r.name, r.ip)
				continue
			}
			addrs := append(slices.Clone(zone.Forward[r.name]), r.ip)
			d.labDNS("set", append([]string{r.name}, addrs...)...)
		}
		zone = d.labZone()
	}
}

// named puts step 13's named.conf statements (the key's include, the
// zone with its update-policy) into the lab's BIND in place of the lab's
// own statement for its zone, and restarts it: from then on BIND takes
// updates signed with the key the document made (tsig-keygen, on host
// dns) and nothing else. The document's example zone becomes the lab's,
// its zone file the lab's (which has the lab's records), the key file's
// path the one in the dns host's root.
func (d *deployment) named(b deployBlock) {
	t := d.t
	if d.exampleZone == "" || d.env.DNSUpdate == nil || d.roots["dns"] == "" {
		t.Fatalf("%s: BIND's statements come after step 13's vars block, in the cross-subnet lab", b)
	}
	conf := d.env.DNSUpdate.Config
	have, err := os.ReadFile(conf)
	if err != nil {
		t.Fatalf("the lab's named.conf: %v", err)
	}
	lab := string(have)
	start := strings.Index(lab, fmt.Sprintf("zone %q {", d.env.Domain))
	end := -1
	if start >= 0 {
		if i := strings.Index(lab[start:], "\n};\n"); i >= 0 {
			end = start + i + len("\n};\n")
		}
	}
	if end < 0 {
		t.Fatalf("the lab's %s has no statement for zone %s that the test can replace:\n%s", conf, d.env.Domain, lab)
	}
	fileRE := regexp.MustCompile(`(?m)^(\s*file\s+)"([^"]*)";`)
	labFile := fileRE.FindStringSubmatch(lab[start:end])
	if labFile == nil {
		t.Fatalf("the lab's statement for zone %s names no file:\n%s", d.env.Domain, lab[start:end])
	}
	text := strings.ReplaceAll(relocateText(d.roots["dns"], b.text), d.exampleZone, d.env.Domain)
	n := 0
	text = fileRE.ReplaceAllStringFunc(text, func(m string) string {
		n++
		return fileRE.FindStringSubmatch(m)[1] + strconv.Quote(labFile[2]) + ";"
	})
	if n != 1 || !strings.Contains(text, fmt.Sprintf("zone %q", d.env.Domain)) || !strings.Contains(text, "name "+d.vars["CLUSTER_NAME"]+". ") {
		t.Fatalf("%s: the test reads one zone statement for %s (the lab's zone) with one file and an update-policy for the cluster name %s., and finds:\n%s", b, d.exampleZone, d.vars["CLUSTER_NAME"], text)
	}
	lab = lab[:start] + "// docs/deploy.md step 13, put here by TestDeploy in place of the lab's statement for the zone:\n" + text + lab[end:]
	if err := os.WriteFile(conf, []byte(lab), 0o644); err != nil {
		t.Fatal(err)
	}
	// A DNS edit that changes nothing restarts named with the new file.
	d.labDNS("reset")
	t.Logf("%s: the lab's BIND restarted with %s:\n%s", b, conf, indent(lab))
}

type deployZone struct {
	Forward map[string][]string `json:"forward"`
	Reverse map[string][]string `json:"reverse"`
}

func (d *deployment) labZone() deployZone {
	out := d.labDNS("list", "--json")
	var z deployZone
	if err := json.Unmarshal([]byte(out), &z); err != nil {
		d.t.Fatalf("lab dns list --json: %v\n%s", err, out)
	}
	return z
}

// labDNS runs `tandem lab dns SUB --name LAB ARGS…`.
func (d *deployment) labDNS(sub string, args ...string) string {
	d.t.Helper()
	args = append([]string{"lab", "dns", sub, "--name", d.lab.name}, args...)
	out, errOut, err := d.lab.tandem(nil, time.Minute, args...)
	if err != nil {
		d.t.Fatalf("tandem %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	if sub != "list" {
		d.t.Logf("tandem %s\n%s%s", strings.Join(args, " "), out, errOut)
	}
	return out
}

// hostEnv is the whole environment a block gets on host.
func (d *deployment) hostEnv(host string) map[string]string {
	env := map[string]string{"LANG": "C.UTF-8", "TERM": "dumb"}
	for k, v := range d.vars {
		env[k] = v
	}
	const sysPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if root, ok := d.roots[host]; ok {
		for k, v := range d.node[host] {
			env[k] = v
		}
		env["PATH"] = filepath.Join(root, "usr/bin") + ":" + sysPath
		env["HOME"] = filepath.Join(root, "root")
		env["PG_CLUSTER_CONF_ROOT"] = filepath.Join(root, "etc/postgresql")
		// The state dir the config file names is this machine's, not the
		// node's: `tandemd --check` looks at the node's, as tandemd will.
		// The witness's is the one its own file names (once installed).
		stateDir := config.Defaults().StateDir
		if host == "w" {
			stateDir = ""
			if conf := filepath.Join(root, packaging.WitnessConfigPath); fileExists(conf) {
				stateDir = d.configOf(conf).StateDir
			}
		}
		if stateDir != "" {
			env["TANDEMD_STATE_DIR"] = d.underRoot(host, stateDir)
		}
	} else {
		env["PATH"] = filepath.Join(d.op, "pkg/usr/bin") + ":" + sysPath
		env["HOME"] = d.op
		// The console's cache: ~/.cache/tandem. Set explicitly because
		// `lab exec` otherwise points the client at the lab's own cache.
		env["XDG_CACHE_HOME"] = filepath.Join(d.op, ".cache")
	}
	return env
}

// runBlock runs block b on host as the document says, and handles save=
// and id=.
func (d *deployment) runBlock(b deployBlock, host string) string {
	t := d.t
	text, dir := b.text, d.op
	if root, ok := d.roots[host]; ok {
		text, dir = relocateText(root, text), root
	}
	if b.has("copy") {
		d.copyFile(b, host)
	}
	d.step++
	script := filepath.Join(d.dir, "scripts", fmt.Sprintf("%02d-%s.sh", d.step, host))
	body := fmt.Sprintf("# %s, on %s\nset -e\ncd %s\n%s", b, host, shellQuote(dir), text)
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := deployRun{host: host, env: d.hostEnv(host), argv: []string{"bash", script}}
	if a := b.attrs["answer"]; a != "" {
		r.argv = []string{"script", "-qec", "bash " + shellQuote(script), "/dev/null"}
		r.answer = a
	}
	var out string
	once := func() {
		start := time.Now()
		var errOut string
		var code int
		out, errOut, code = d.run(r)
		t.Logf("%s on %s (%s, exit %d):\n%s\n%s", b, host, time.Since(start).Round(time.Millisecond), code, indent(text), indent(out+errOut))
		if code != 0 {
			t.Fatalf("%s failed on %s (exit %d): the document's commands do not work as written", b, host, code)
		}
	}
	if check := d.retryCheck(b); check != nil {
		eventually(t, fmt.Sprintf("%s on %s shows what it reads", b, host), 20*time.Second, func() (bool, string) {
			once()
			if err := check(out); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	} else {
		once()
	}
	if save := b.attrs["save"]; save != "" {
		name := os.Expand(save, func(k string) string { return d.hostEnv(host)[k] })
		if name != filepath.Base(name) || name == "" {
			t.Fatalf("%s: save=%s must name a file in the operator's directory", b, name)
		}
		if err := os.WriteFile(filepath.Join(d.op, name), []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if id := b.attrs["id"]; id != "" {
		d.outputs[id] = out
	}
	return out
}

// copyFile does for block b on host what the document asks the operator
// to do before it (copy=HOST:SRC:DST): copies SRC of lab host HOST to DST
// on host, both in the hosts' roots, as scp would (the source's mode, a
// new file owned by root).
func (d *deployment) copyFile(b deployBlock, host string) {
	t := d.t
	from, src, dst := b.copySpec()
	if d.roots[from] == "" || d.roots[host] == "" {
		t.Fatalf("%s: copy= from %s to %s: both need a root directory in the test", b, from, host)
	}
	srcPath, dstPath := relocateText(d.roots[from], src), relocateText(d.roots[host], dst)
	if !strings.HasPrefix(srcPath, d.roots[from]+"/") || !strings.HasPrefix(dstPath, d.roots[host]+"/") {
		t.Fatalf("%s: copy= %s or %s is none of the paths the test relocates (deployNodePaths)", b, src, dst)
	}
	fi, err := os.Stat(srcPath)
	if err != nil {
		t.Fatalf("%s: the file to copy from %s: %v", b, from, err)
	}
	data, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dstPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dstPath, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: copied %s of %s to %s of %s (%s), as the operator would with scp", b, src, from, dst, host, fi.Mode().Perm())
}

// retryCheck is, for a block that only reads, the condition the test waits
// for by running it again (replication takes a moment); nil for blocks
// that run once.
func (d *deployment) retryCheck(b deployBlock) func(string) error {
	switch b.attrs["id"] {
	case "replicated":
		return func(out string) error {
			if !strings.Contains(out, deployGreeting) {
				return fmt.Errorf("the secondary does not show %q", deployGreeting)
			}
			return nil
		}
	case "automatic":
		// The nodes look at the quorum every second: status may need a
		// look or two to show it all, as the document says.
		return func(out string) error {
			for _, re := range deployQuorumLines {
				if !re.MatchString(out) {
					return fmt.Errorf("tandem status does not show %s yet", re)
				}
			}
			return nil
		}
	}
	return nil
}

// deployQuorumLines are what step 12 says `tandem status` shows once the
// cluster is in automatic mode, with b primary after step 11.
var deployQuorumLines = []*regexp.Regexp{
	regexp.MustCompile(`(?m)^\s*failover automatic: leader key held by b\b`),
	regexp.MustCompile(`(?m)^\s*quorum members: .*\ba ok\b`),
	regexp.MustCompile(`(?m)^\s*quorum members: .*\bb ok\b`),
	regexp.MustCompile(`(?m)^\s*quorum members: .*\bw ok\b`),
	regexp.MustCompile(`(?m)^\s*quorum members: .*; sync record names a$`),
	regexp.MustCompile(`(?m)^\s*a fails over by itself if the primary's lease runs out$`),
}

// install stands for `apt install ./tandem_…deb` on host (deviation 1).
func (d *deployment) install(b deployBlock, host string) {
	t, root := d.t, d.roots[host]
	if out, err := runLocal("dpkg-deb", "-x", d.deb, root); err != nil {
		t.Fatalf("%s: dpkg-deb -x: %v\n%s", b, err, out)
	}
	for _, dir := range []struct {
		path string
		mode os.FileMode
	}{{"var/lib/tandem", 0o711}, {"var/lib/tandem/state", 0o700}, {"run/tandem", 0o755}, {"root", 0o700}} {
		p := filepath.Join(root, dir.path)
		if err := os.MkdirAll(p, dir.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, dir.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{packaging.TandemdPath, packaging.WitnessPath, packaging.ConsolePath, packaging.UnitPath, packaging.ConfigPath, packaging.WitnessUnitPath, packaging.WitnessConfigPath} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatalf("%s: the package did not install %s: %v", b, f, err)
		}
	}
	d.installCreateclusterConf(b, host)
	t.Logf("%s on %s: extracted %s into %s (instead of apt install)", b, host, filepath.Base(d.deb), root)
}

// installCreateclusterConf does what installing PostgreSQL does with
// Debian's createcluster.conf (deviation 1), and checks that the cluster
// main would not be created.
func (d *deployment) installCreateclusterConf(b deployBlock, host string) {
	t, root := d.t, d.roots[host]
	debian, err := os.ReadFile(debianCreateclusterConf)
	if err != nil {
		t.Fatalf("Debian's createcluster.conf, which the install step puts on the node: %v", err)
	}
	const dropIns = "include_dir '/etc/postgresql-common/createcluster.d'"
	if !strings.Contains(string(debian), dropIns) {
		t.Fatalf("%s on this machine does not end with %s, which the document relies on", debianCreateclusterConf, dropIns)
	}
	want := relocateText(root, string(debian))
	path := filepath.Join(root, debianCreateclusterConf)
	if have, err := os.ReadFile(path); err == nil {
		if string(have) != want {
			t.Fatalf("%s: %s on node %s is not Debian's: written before PostgreSQL was installed, apt would keep it and lose Debian's settings for new clusters:\n%s", b, debianCreateclusterConf, host, have)
		}
	} else if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runLocal("pg_conftool", path, "show", "-bs", "create_main_cluster")
	if strings.TrimSpace(out) != "off" {
		t.Fatalf("%s: with the document's createcluster settings, installing PostgreSQL on %s would create the cluster main: pg_conftool says %q (%v)", b, host, out, err)
	}
	t.Logf("%s on %s: Debian's createcluster.conf in place, unchanged; create_main_cluster is off", b, host)
}

// startService stands for `systemctl enable --now UNIT` (deviation 2):
// tandemd on a node, tandem-witness on the witness.
func (d *deployment) startService(b deployBlock, host, unitName string) {
	t, root := d.t, d.roots[host]
	unit := readDeployUnit(t, filepath.Join(root, deployUnits[unitName]))
	argv := make([]string, len(unit.execStart))
	confPath := ""
	for i, a := range unit.execStart {
		argv[i] = relocateText(root, a)
		if i > 0 && unit.execStart[i-1] == "--config" {
			confPath = argv[i]
		}
	}
	if confPath == "" {
		t.Fatalf("%s: the unit %s starts tandemd without --config FILE, which the test reads the paths from; teach it", b, unitName)
	}
	witness := unitName == "tandem-witness"
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
	for k, v := range unit.env {
		env[k] = relocateText(root, v)
	}
	// The paths tandemd uses, as the config file leaves them, relocated
	// into the root where they are not there already; the watchdog's too,
	// where there is none (deviation 5).
	cfg := d.configOf(confPath)
	paths := []struct{ env, path string }{{"TANDEMD_STATE_DIR", cfg.StateDir}}
	if !witness {
		paths = append(paths, []struct{ env, path string }{
			{"TANDEMD_POSTGRES_DATA_DIR", cfg.Postgres.DataDir},
			{"TANDEMD_POSTGRES_SOCKET_DIR", cfg.Postgres.SocketDir},
			{"TANDEMD_WATCHDOG_DEVICE", cfg.Watchdog.Device},
		}...)
	}
	for _, s := range paths {
		if p := d.underRoot(host, s.path); p != s.path {
			env[s.env] = p
		}
	}
	// What systemd does before it starts the unit: StateDirectory=, with
	// its mode. And what ProtectSystem=strict leaves tandemd: the state
	// dir must be one it may write.
	if unit.stateDir != "" {
		p := filepath.Join(root, "var/lib", unit.stateDir)
		if err := os.MkdirAll(p, unit.stateDirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, unit.stateDirMode); err != nil {
			t.Fatal(err)
		}
	}
	if unit.protectSystem == "strict" {
		writable := slices.Clone(unit.readWrite)
		if unit.stateDir != "" {
			writable = append(writable, "/var/lib/"+unit.stateDir)
		}
		if !slices.ContainsFunc(writable, func(w string) bool { return cfg.StateDir == w || strings.HasPrefix(cfg.StateDir, w+"/") }) {
			t.Fatalf("%s: state_dir %s is none of the paths the unit %s lets tandemd write under ProtectSystem=strict (%v): it could not start", b, cfg.StateDir, unitName, writable)
		}
	}
	logPath := filepath.Join(root, unitName+".log")
	pid, done := deployStartDetached(t, d.ns[host], deployEnv(env), logPath, argv)
	t.Logf("%s on %s: started %s (pid %d) with %v, output in %s (instead of systemctl)", b, host, strings.Join(argv, " "), pid, deployEnv(env), logPath)
	select {
	case <-done:
		t.Fatalf("%s: %s on %s exited at once:\n%s", b, unitName, host, tailOf(logPath, 30))
	case <-time.After(300 * time.Millisecond):
	}
}

// configOf is the configuration file at path (in a host's root) as the
// document left it.
func (d *deployment) configOf(path string) config.Config {
	cfg, err := config.Load(path, nil)
	if err != nil {
		d.t.Fatalf("the config file %s as the document left it: %v", path, err)
	}
	return cfg
}

// underRoot is path relocated into host's root. Anything tandemd would
// write outside it would be this machine's: the test stops there.
func (d *deployment) underRoot(host, path string) string {
	root := d.roots[host]
	p := relocatePath(root, path)
	if !strings.HasPrefix(p, root+"/") {
		d.t.Fatalf("%s on %s is none of the paths the test relocates into the host's root (deployNodePaths): tandemd would use this machine's; teach the test", path, host)
	}
	return p
}

// check verifies what the document promises once its steps are done.
func (d *deployment) check() {
	t := d.t
	if out := d.outputs["preflight"]; !strings.Contains(out, "no problems") || strings.Contains(out, "PROBLEM") {
		t.Errorf("the preflight should find no problem:\n%s", out)
	}
	if out := d.outputs["assemble"]; !strings.Contains(out, "assembled") {
		t.Errorf("the assembly should say the cluster is assembled:\n%s", out)
	}
	if out := d.outputs["status"]; !regexp.MustCompile(`primary a\b`).MatchString(out) {
		t.Errorf("tandem status should show a as primary:\n%s", out)
	}
	if out, want := d.outputs["status"], "endpoint dns: "+d.vars["CLUSTER_NAME"]+" "; d.variant == deployCrossSubnet && !strings.Contains(out, want) {
		t.Errorf("tandem status should show %q (step 13):\n%s", want, out)
	}

	// Step 8: each node says which DNS server it asked (the lab's, from
	// the namespace's resolv.conf).
	if out, server := d.outputs["preflight"], "asking "+d.env.DNSServer+":53 (from /etc/resolv.conf)"; strings.Count(out, server) != 2 {
		t.Errorf("the preflight should name the DNS server each node asked, %q:\n%s", server, out)
	}

	// Step 10: the application's write through the cluster name landed on
	// the primary, read-write, and is on the secondary.
	app := d.outputs["app"]
	if !strings.Contains(app, "INSERT 0 1") || !regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(d.endpointIP("a"))+`\s*\|\s*f\s*$`).MatchString(app) {
		t.Errorf("the application's write should be answered on %s (the cluster IP, or with the DNS endpoint a's node IP), read-write:\n%s", d.endpointIP("a"), app)
	}
	if out := d.outputs["replicated"]; !strings.Contains(out, deployGreeting) {
		t.Errorf("the secondary should show the application's write %q:\n%s", deployGreeting, out)
	}
	// Step 11: the switchover, and the write through the cluster name
	// after it, on b, with the first write kept.
	if out := d.outputs["switchover"]; !strings.Contains(out, "Switchover done") || !strings.Contains(out, "b is primary, a its standby") {
		t.Errorf("the switchover should say b is primary:\n%s", out)
	}
	sw := d.outputs["switched"]
	if !regexp.MustCompile(`primary b\b`).MatchString(sw) || !strings.Contains(sw, "INSERT 0 1") ||
		!regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(d.endpointIP("b"))+`\s*\|\s*f\s*\|\s*2\s*$`).MatchString(sw) {
		t.Errorf("after the switchover, b should be primary and the write answered on %s (the cluster IP, or with the DNS endpoint b's node IP), read-write, with both greetings:\n%s", d.endpointIP("b"), sw)
	}
	if d.variant == deployCrossSubnet {
		// Step 13: libpq, given both node IPs, writes on the one that
		// takes writes, b after the switchover.
		mh := d.outputs["multihost"]
		if !strings.Contains(mh, "INSERT 0 1") || !regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(d.vars["B_IP"])+`\s*\|\s*f\s*$`).MatchString(mh) {
			t.Errorf("the write through both node IPs should be answered on b's %s, read-write:\n%s", d.vars["B_IP"], mh)
		}
	}
	// Step 12: the change to automatic failover, and the quorum in status.
	if out := d.outputs["failover-mode"]; !strings.Contains(out, "Failover mode of "+d.vars["CLUSTER_NAME"]+" is automatic.") {
		t.Errorf("tandem failover-mode should say the cluster is in automatic mode:\n%s", out)
	}
	for _, re := range deployQuorumLines {
		if out := d.outputs["automatic"]; !re.MatchString(out) {
			t.Errorf("tandem status should show %s:\n%s", re, out)
		}
	}
	if d.variant != "adopt" {
		// Step 5: the new cluster checksums its pages, and so does its
		// copy on the secondary.
		for _, host := range []string{"a", "b"} {
			out, errOut, code := d.run(deployRun{host: host, env: d.hostEnv(host), argv: []string{
				filepath.Join(d.pgBin(), "psql"), "-h", filepath.Join(d.roots[host], "run/tandem/postgresql"), "-U", "postgres",
				"-Atc", "SHOW data_checksums"}})
			if code != 0 || strings.TrimSpace(out) != "on" {
				t.Errorf("node %s: the new cluster should have data checksums: exit %d\n%s%s", host, code, out, errOut)
			}
		}
	}
	if d.variant == "adopt" {
		// The adopted database's own data is served through the cluster
		// name and replicated to the secondary.
		for _, host := range []string{"a", "b"} {
			out, errOut, code := d.run(deployRun{host: host, env: d.hostEnv(host), argv: []string{
				filepath.Join(d.pgBin(), "psql"), "-h", filepath.Join(d.roots[host], "run/tandem/postgresql"), "-U", "postgres",
				"-d", "legacy", "-Atc", "SELECT said FROM kept"}})
			if code != 0 || strings.TrimSpace(out) != "from before tandem" {
				t.Errorf("node %s should serve the adopted database's data: exit %d\n%s%s", host, code, out, errOut)
			}
		}
		// Step 5: Debian's pg_hba.conf was replaced by tandemd's and kept
		// beside it.
		data := filepath.Join(d.roots["a"], "var/lib/postgresql/15/main")
		kept, err := os.ReadFile(filepath.Join(data, "pg_hba.conf.before-tandem"))
		if err != nil || !strings.Contains(string(kept), "peer") {
			t.Errorf("Debian's pg_hba.conf should be kept as pg_hba.conf.before-tandem: %v\n%s", err, kept)
		}
		if hba, err := os.ReadFile(filepath.Join(data, "pg_hba.conf")); err != nil || !strings.HasPrefix(string(hba), "# pg_hba.conf written by tandemd") {
			t.Errorf("the adopted cluster's pg_hba.conf should be tandemd's: %v\n%s", err, hba)
		}
	}
}

// needDistributionTools skips the adopt run where the machine cannot make
// the Debian cluster the document's adopt section starts from.
func (d *deployment) needDistributionTools() {
	for _, p := range []string{"/usr/bin/pg_createcluster", "/usr/bin/pg_ctlcluster", "/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key"} {
		if _, err := os.Stat(p); err != nil {
			d.t.Skipf("the adopt section starts from Debian's PostgreSQL cluster, which needs %s: %v", p, err)
		}
	}
	if v := versionOfBinDir(d.pgBin()); v != "15" {
		d.t.Skipf("the adopt section is written for PostgreSQL 15; this machine's newest is %s", v)
	}
}

func (d *deployment) pgBin() string {
	dir, err := config.FindPostgresBinDir()
	if err != nil {
		d.t.Fatalf("PostgreSQL's programs: %v", err)
	}
	return dir
}

func versionOfBinDir(dir string) string {
	// /usr/lib/postgresql/15/bin
	return filepath.Base(filepath.Dir(dir))
}

// makeDistributionCluster gives a node what a Debian host with PostgreSQL
// 15 has before tandem: Debian's createcluster.conf and the cluster
// 15/main (configuration in /etc/postgresql/15/main, data in
// /var/lib/postgresql/15/main, relocated into the node's root like
// everything of the node), running, with some data if withData.
func (d *deployment) makeDistributionCluster(host string, withData bool) {
	t, root := d.t, d.roots[host]
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	for _, dir := range []struct {
		path  string
		mode  os.FileMode
		owned bool
	}{
		{"var/lib/postgresql", 0o755, true},
		{"var/lib/postgresql/15", 0o755, true},
		{"var/run/postgresql", 0o2775, true},
		{"var/log/postgresql", 0o1775, false},
		{"etc/postgresql", 0o755, false},
		{"etc/postgresql-common", 0o755, false},
	} {
		p := filepath.Join(root, dir.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, dir.mode); err != nil {
			t.Fatal(err)
		}
		if dir.owned {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	debian, err := os.ReadFile(debianCreateclusterConf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, debianCreateclusterConf), []byte(relocateText(root, string(debian))), 0o644); err != nil {
		t.Fatal(err)
	}
	env := d.hostEnv(host)
	sock := filepath.Join(root, "var/run/postgresql")
	psql := filepath.Join(d.pgBin(), "psql")
	steps := [][]string{
		{"pg_createcluster", "15", "main", "-d", filepath.Join(root, "var/lib/postgresql/15/main"), "-s", sock,
			"-l", filepath.Join(root, "var/log/postgresql/postgresql-15-main.log"), "-p", "5432"},
		{"pg_ctlcluster", "15", "main", "start"},
	}
	if withData {
		steps = append(steps, [][]string{{"runuser", "-u", "postgres", "--", psql, "-h", sock, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE legacy"},
			{"runuser", "-u", "postgres", "--", psql, "-h", sock, "-d", "legacy", "-v", "ON_ERROR_STOP=1",
				"-c", "CREATE TABLE kept (said text); INSERT INTO kept VALUES ('from before tandem')"}}...)
	}
	for _, argv := range steps {
		out, errOut, code := d.run(deployRun{host: host, env: env, argv: argv, timeout: time.Minute})
		if code != 0 {
			t.Fatalf("making node %s's Debian cluster: %v: exit %d\n%s%s", host, argv, code, out, errOut)
		}
	}
	t.Logf("node %s has Debian's cluster 15/main running (with data: %v) in %s", host, withData, root)
}

// runLocal runs a command on this machine (not in the lab).
func runLocal(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
