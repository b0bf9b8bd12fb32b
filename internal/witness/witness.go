package witness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/fsutil"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/quorumspec"
	"github.com/tandem-ha/tandem/internal/service"
	"github.com/tandem-ha/tandem/internal/valid"
	"github.com/tandem-ha/tandem/internal/version"
)

// The witness is the third vote of automatic failover: `tandem-witness`
// on a small third machine runs one etcd member of the cluster's quorum,
// serves a node API of its own (so the console pins and reaches it the
// same way) and runs no PostgreSQL.

// witnessFile keeps, in the state dir, the quorum the witness was given
// at assembly, so a restart starts its member again.
const witnessFile = "witness.json"

// witnessMemoryLimit is the Go heap target of the witness (when
// GOMEMLIMIT is not set): etcd keeps caches it would otherwise let grow
// to twice the live heap, and the witness is meant for a small machine.
const witnessMemoryLimit = 24 << 20

type witnessRecord struct {
	Cluster string          `json:"cluster"`
	Quorum  *api.QuorumSpec `json:"quorum,omitempty"`
}

// Witness is a running witness.
type Witness struct {
	cfg         config.Config
	log         *slog.Logger
	certPEM     []byte
	keyPEM      []byte
	fingerprint string          // of the API certificate, which consoles pin
	memberFP    string          // of the quorum member certificate
	ctx         context.Context // the witness's lifetime

	mu     sync.Mutex
	rec    witnessRecord
	member *quorum.Member
	state  string // none, starting, running, failed
	err    string
	stop   context.CancelFunc // of the member's keeper
	done   chan struct{}      // closed when the keeper has stopped
}

// Run runs the witness until ctx ends.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log = log.With("witness", cfg.Node.Name)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(witnessMemoryLimit)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("while creating state_dir: %w", err)
	}
	if err := service.CheckPrivate(cfg.StateDir); err != nil {
		return err
	}
	unlock, err := service.LockStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	token, err := identity.EnsureToken(cfg.StateDir)
	if err != nil {
		return err
	}
	cert, err := identity.EnsureCert(cfg.StateDir, cfg.Node.Name, []string{cfg.Node.IP})
	if err != nil {
		return err
	}
	certPEM, keyPEM, memberFP, err := identity.MemberCert(cfg.StateDir)
	if err != nil {
		return err
	}
	w := &Witness{cfg: cfg, log: log, certPEM: certPEM, keyPEM: keyPEM, fingerprint: identity.Fingerprint(cert.Certificate[0]), memberFP: memberFP, ctx: ctx, state: "none"}
	if err := w.load(); err != nil {
		return err
	}
	log.Info("witness starting", "version", version.Version, "fingerprint", w.fingerprint, "cluster", w.rec.Cluster)
	if w.rec.Quorum != nil {
		w.startMember(*w.rec.Quorum)
	}
	srv := api.NewServer(api.Config{Listen: cfg.API.Listen, Cert: cert, Token: token, Backend: w, Log: log.With("component", "api")})
	if err := srv.Start(ctx); err != nil {
		w.stopMember()
		return err
	}
	_ = service.Notify("READY=1\nSTATUS=witness API listening")
	<-ctx.Done()
	log.Info("witness stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Stop(sctx)
	cancel()
	w.stopMember()
	log.Info("witness stopped")
	return nil
}

func (w *Witness) load() error {
	b, err := os.ReadFile(filepath.Join(w.cfg.StateDir, witnessFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("while reading %s: %w", witnessFile, err)
	}
	if err := json.Unmarshal(b, &w.rec); err != nil {
		return fmt.Errorf("%s in %s is damaged (%v): restore it, or remove it and the quorum dir and join the witness again", witnessFile, w.cfg.StateDir, err)
	}
	return nil
}

func (w *Witness) save(rec witnessRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(w.cfg.StateDir, witnessFile), append(b, '\n'), 0o600)
}

// self is the witness's own member entry.
func (w *Witness) self() api.QuorumMember {
	return quorumspec.Self(w.cfg, w.certPEM, w.memberFP)
}

// Node answers GET /v1/node for the witness.
func (w *Witness) Node(context.Context) api.NodeInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	self := w.self()
	return api.NodeInfo{
		Name: w.cfg.Node.Name, IP: w.cfg.Node.IP, APIPort: service.APIPort(w.cfg.API.Listen), TandemdVersion: version.Version,
		Fingerprint: w.fingerprint, Role: "witness", Cluster: w.rec.Cluster,
		Postgres: api.PostgresInfo{State: "none"}, QuorumMember: &self,
	}
}

// Witness answers GET /v1/witness.
func (w *Witness) Witness(context.Context) api.WitnessInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return api.WitnessInfo{
		Name: w.cfg.Node.Name, IP: w.cfg.Node.IP, TandemdVersion: version.Version, Fingerprint: w.fingerprint,
		Member: w.self(), Cluster: w.rec.Cluster, State: w.state, Error: w.err,
	}
}

// Healthy is /health: a witness is unhealthy only when its member failed.
func (w *Witness) Healthy() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == "failed" {
		return false, "quorum member failed: " + w.err
	}
	return true, "ok"
}

// WitnessJoin gives the witness its cluster's quorum and starts its
// member. Joining the same cluster again changes nothing; another cluster
// is refused until the witness leaves the first.
func (w *Witness) WitnessJoin(_ context.Context, req api.WitnessJoin) (api.WitnessInfo, error) {
	if !valid.ClusterName(req.Cluster) {
		return api.WitnessInfo{}, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "cluster name %q must be letters, digits and ._- (as at assembly)", req.Cluster)
	}
	if err := quorumspec.Check(req.Quorum, w.cfg.Node.Name); err != nil {
		return api.WitnessInfo{}, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "the quorum is refused: %v", err)
	}
	self := w.self()
	for _, m := range req.Quorum.Members {
		if m.Name == self.Name && (m.PeerAddr != self.PeerAddr || m.ClientAddr != self.ClientAddr || m.Fingerprint != self.Fingerprint) {
			return api.WitnessInfo{}, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "the quorum names witness %s at %s/%s with certificate %s, but it is at %s/%s with %s: ask GET /v1/witness again", m.Name, m.PeerAddr, m.ClientAddr, m.Fingerprint, self.PeerAddr, self.ClientAddr, self.Fingerprint)
		}
	}
	w.mu.Lock()
	cur := w.rec
	w.mu.Unlock()
	if cur.Quorum != nil {
		if cur.Cluster == req.Cluster && cur.Quorum.Token == req.Quorum.Token {
			return w.Witness(context.Background()), nil
		}
		return api.WitnessInfo{}, api.Errorf(http.StatusConflict, api.CodeConflict, "witness %s already serves cluster %s; run `tandem witness leave` against it (or disassemble that cluster) first", w.cfg.Node.Name, cur.Cluster)
	}
	rec := witnessRecord{Cluster: req.Cluster, Quorum: &req.Quorum}
	if err := w.save(rec); err != nil {
		return api.WitnessInfo{}, err
	}
	w.mu.Lock()
	w.rec = rec
	w.mu.Unlock()
	w.log.Info("witness joined a cluster", "cluster", req.Cluster)
	w.startMember(req.Quorum)
	return w.Witness(context.Background()), nil
}

// WitnessLeave stops the member, removes its data and forgets the
// cluster.
func (w *Witness) WitnessLeave(context.Context) error {
	w.stopMember()
	if err := os.RemoveAll(filepath.Join(w.cfg.StateDir, service.QuorumDir)); err != nil {
		return fmt.Errorf("while removing the quorum data: %w", err)
	}
	if err := w.save(witnessRecord{}); err != nil {
		return err
	}
	w.mu.Lock()
	w.rec, w.state, w.err = witnessRecord{}, "none", ""
	w.mu.Unlock()
	w.log.Info("witness left its cluster")
	return nil
}

// startMember keeps the member running in the background: started (it
// waits for a second member to form the quorum), restarted if it fails.
func (w *Witness) startMember(q api.QuorumSpec) {
	mc, err := quorumspec.MemberConfig(q, w.cfg.Node.Name, filepath.Join(w.cfg.StateDir, service.QuorumDir), w.certPEM, w.keyPEM)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.state, w.err = "failed", err.Error()
		return
	}
	mc.Log = w.log
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	w.stop, w.done, w.state, w.err = cancel, done, "starting", ""
	go func() {
		defer close(done)
		quorum.Keep(ctx, mc, w.log, func(m *quorum.Member, state string, err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.member, w.state, w.err = m, state, ""
			if err != nil {
				w.err = err.Error()
			}
		})
	}()
}

func (w *Witness) stopMember() {
	w.mu.Lock()
	stop, done := w.stop, w.done
	w.stop, w.done = nil, nil
	w.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}
