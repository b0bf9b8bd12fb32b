// Package quorum is tandem's third vote for automatic failover: an embedded
// etcd member (on each node and on the witness), the leader key held under
// a lease whose self-fence deadline is measured from when each renewal was
// sent, and the sync record naming the synchronous standby.
//
// Not wired into the node's operations yet: see docs/quorum.md.
package quorum

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Bounds on the member's memory and disk. etcd's defaults are sized for
// Kubernetes (10 000 entries kept in memory between snapshots, 2 GiB
// backend, 1.5 MiB requests); tandem keeps a leader key, a sync record and a
// few lease renewals a second.
const (
	snapshotCount          = 2000
	snapshotCatchUpEntries = 500
	quotaBackendBytes      = 64 << 20
	maxRequestBytes        = 256 << 10
	maxTxnOps              = 16
	// Keep the last 1000 revisions: the standby's watch resumes from a
	// revision it has seen, and nothing needs older history.
	autoCompactionRetention = "1000"
)

// walSegmentBytes is the size etcd preallocates for each WAL segment
// file, and it keeps two (the one in use and the next): etcd's 64 MB made a
// member's data dir 123 MiB before it held anything. A segment of 4 MiB
// still holds thousands of tandem's entries (a request is at most
// maxRequestBytes) between snapshots.
const walSegmentBytes = 4 << 20

// etcd reads the segment size from a package variable, for every member
// the process runs; tandem runs one, or several in tests, all alike.
func init() { wal.SegmentSizeBytes = walSegmentBytes }

// Raft timings: etcd's defaults. The lease TTL (see LeaseConfig) must stay
// above 1.5 × electionMs, the smallest TTL etcd grants.
const (
	tickMs     = 100
	electionMs = 1000
)

// MemberConfig describes one member of the three: node a, node b or the
// witness.
type MemberConfig struct {
	Name       string // member name, unique in the cluster: "a", "b", "w"
	Dir        string // data dir (created 0700)
	PeerAddr   string // host:port this member listens on and advertises to its peers
	ClientAddr string // host:port for clients (tandemd's own client uses it)
	// Peers maps every member's name (this one included) to its peer
	// host:port: the initial cluster.
	Peers map[string]string
	// Token tells one tandem cluster's members from another's (the cluster
	// id); members with different tokens refuse each other.
	Token string
	// Existing is set when this member was added to a running cluster
	// (AddMember) instead of being one of the three at assembly.
	Existing bool
	// ClientAddrs maps every member's name to its client host:port; Keep
	// uses the others' to replace this member when its data is lost.
	ClientAddrs map[string]string

	CertPEM, KeyPEM []byte // this member's certificate (NewMemberCert) and key
	// TrustedPEM holds the certificates of all members (this one's
	// included): a peer or client is accepted only if it presents one of
	// them.
	TrustedPEM [][]byte

	Log *slog.Logger
}

// Member is a running embedded etcd member.
type Member struct {
	cfg  MemberConfig
	etcd *embed.Etcd
	tls  string // dir of the PEM files handed to etcd
}

// File names under the member's data dir. etcd's TLS options take files,
// so the PEM given in MemberConfig is written there at each start.
const (
	tlsDir      = "tls"
	certFile    = "member.crt"
	keyFile     = "member.key"
	trustedFile = "trusted.pem"
	etcdDir     = "etcd"
)

// StartMember starts the member and waits until it has joined its cluster
// (its raft has a leader and it serves clients), or ctx ends.
func StartMember(ctx context.Context, c MemberConfig) (*Member, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("while creating the quorum data dir %s: %w", c.Dir, err)
	}
	tdir := filepath.Join(c.Dir, tlsDir)
	if err := writeTLS(tdir, c); err != nil {
		return nil, err
	}

	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = filepath.Join(c.Dir, etcdDir)
	peerURL := url.URL{Scheme: "https", Host: c.PeerAddr}
	clientURL := url.URL{Scheme: "https", Host: c.ClientAddr}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.InitialCluster = initialCluster(c.Peers)
	cfg.InitialClusterToken = c.Token
	cfg.ClusterState = embed.ClusterStateFlagNew
	if c.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	tlsInfo := transport.TLSInfo{
		CertFile:       filepath.Join(tdir, certFile),
		KeyFile:        filepath.Join(tdir, keyFile),
		TrustedCAFile:  filepath.Join(tdir, trustedFile),
		ClientCertAuth: true,
		MinVersion:     tls.VersionTLS12,
	}
	cfg.PeerTLSInfo = tlsInfo
	cfg.ClientTLSInfo = tlsInfo

	cfg.TickMs, cfg.ElectionMs = tickMs, electionMs
	cfg.SnapshotCount = snapshotCount
	cfg.SnapshotCatchUpEntries = snapshotCatchUpEntries
	cfg.QuotaBackendBytes = quotaBackendBytes
	cfg.MaxRequestBytes = maxRequestBytes
	cfg.MaxTxnOps = maxTxnOps
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = autoCompactionRetention
	cfg.MaxSnapFiles, cfg.MaxWalFiles = 2, 2
	cfg.EnableGRPCGateway = false
	cfg.Metrics = "basic"
	// Refuse a reconfiguration that would lose the quorum.
	cfg.StrictReconfigCheck = true
	// embed leaves this 0 (etcd's command line sets it), which logs every
	// request as slow; 200 ms is a tenth of the lease: worth a warning.
	cfg.WarningUnaryRequestDuration = 200 * time.Millisecond

	zl := zap.New(newSlogCore(log.With("component", "etcd"), zap.WarnLevel))
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	cfg.Logger = "zap"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("while starting quorum member %s: %w", c.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("quorum member %s stopped while starting: %w", c.Name, err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("while waiting for quorum member %s to join its cluster: %w", c.Name, ctx.Err())
	}
	log.Info("quorum member started", "member", c.Name, "peer", peerURL.String(), "client", clientURL.String())
	return &Member{cfg: c, etcd: e, tls: tdir}, nil
}

func (c MemberConfig) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("quorum member: no name"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("quorum member: no data dir"))
	}
	if c.PeerAddr == "" || c.ClientAddr == "" {
		errs = append(errs, errors.New("quorum member: peer and client addresses are both needed"))
	}
	if p, ok := c.Peers[c.Name]; !ok || p != c.PeerAddr {
		errs = append(errs, fmt.Errorf("quorum member %s: the initial cluster must name this member at %s", c.Name, c.PeerAddr))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("quorum member: no cluster token"))
	}
	if len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 || len(c.TrustedPEM) == 0 {
		errs = append(errs, errors.New("quorum member: certificate, key and trusted certificates are all needed"))
	}
	return errors.Join(errs...)
}

func initialCluster(peers map[string]string) string {
	names := make([]string, 0, len(peers))
	for n := range peers {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n+"="+(&url.URL{Scheme: "https", Host: peers[n]}).String())
	}
	return strings.Join(parts, ",")
}

// Stop stops the member (a clean stop: it hands the raft leadership on if
// it has it) and closes its listeners.
func (m *Member) Stop() {
	m.etcd.Close()
}

// Err reports a member that stopped on its own (a fatal error in etcd).
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// ClientURL is where this member serves clients.
func (m *Member) ClientURL() string {
	return (&url.URL{Scheme: "https", Host: m.cfg.ClientAddr}).String()
}

// ID is the member's id in its cluster.
func (m *Member) ID() uint64 { return uint64(m.etcd.Server.MemberID()) }

// IsRaftLeader says whether this member leads the etcd cluster now.
func (m *Member) IsRaftLeader() bool {
	return m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}

// Client connects to this member's client URL with the member's own
// certificate; tandemd's leadership and sync record go through it.
func (m *Member) Client() (*clientv3.Client, error) {
	return NewClient(ClientConfig{
		Endpoints:  []string{m.ClientURL()},
		CertPEM:    m.cfg.CertPEM,
		KeyPEM:     m.cfg.KeyPEM,
		TrustedPEM: m.cfg.TrustedPEM,
	})
}

// ClientConfig says how to reach a quorum: the embedded members, or later
// an external etcd.
type ClientConfig struct {
	Endpoints       []string
	CertPEM, KeyPEM []byte   // client certificate
	TrustedPEM      [][]byte // certificates (or CAs) the servers must present
	DialTimeout     time.Duration
}

// ProbeTLS dials endpoint (https://host:port) and completes a TLS
// handshake with c's certificates, to say why a client gets no answer: the
// etcd client itself only times out. With --client-cert-auth a refused
// client certificate shows on the first read, so the probe reads once.
func ProbeTLS(ctx context.Context, c ClientConfig, endpoint string) error {
	tc, err := clientTLS(c.CertPEM, c.KeyPEM, c.TrustedPEM)
	if err != nil {
		return err
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	tc.ServerName = u.Hostname()
	tc.NextProtos = []string{"h2"}
	d := tls.Dialer{Config: tc}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The server speaks first in HTTP/2 (its SETTINGS frame); a refusal of
	// our certificate arrives as an alert instead.
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	return nil
}

// NewClient makes an etcd client. It does not wait for a connection: the
// first request does.
func NewClient(c ClientConfig) (*clientv3.Client, error) {
	tc, err := clientTLS(c.CertPEM, c.KeyPEM, c.TrustedPEM)
	if err != nil {
		return nil, err
	}
	dt := c.DialTimeout
	if dt == 0 {
		dt = 2 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		TLS:         tc,
		DialTimeout: dt,
		// Keepalive pings find a dead connection before the lease does.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		// gRPC's reconnect backoff grows to 2 minutes by default: after an
		// outage of the whole etcd (or of this node's own member) the
		// client would wait that long before it tries again, while the
		// members are back and the primary lives on failsafe promises.
		// A lease of seconds wants a retry within a second.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("while creating the quorum client for %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	return cli, nil
}
