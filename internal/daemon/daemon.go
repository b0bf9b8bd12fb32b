// Package daemon wires tandemd's components together and runs them with one
// lifecycle: start in order, stop in reverse order when the context ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/cluster"
	"github.com/tandem-ha/tandem/internal/clusterip"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/dnsupdate"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/notify"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/quorumspec"
	"github.com/tandem-ha/tandem/internal/service"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/version"
	"github.com/tandem-ha/tandem/internal/webui"
)

// PasswordFile holds the PostgreSQL superuser password inside the state dir.
const PasswordFile = "postgres-password"

// OperationGrace is how long a stopping tandemd waits for the operation in
// flight before it cancels it (the unit's TimeoutStopSec counts it).
const OperationGrace = 20 * time.Second

// Daemon is one node's tandemd.
type Daemon struct {
	cfg config.Config
	log *slog.Logger
	pg  *postgres.Supervisor

	mu  sync.Mutex
	srv *api.Server // once the API is built; ReloadTokens reaches it
	ui  *webui.Server

	// A reload (reload.go): the executable and configuration file to
	// re-execute with, the requests from the signal handler, and what the
	// old process hands over once Run has let go of everything.
	exe        string
	configPath string
	reloads    chan struct{}
	handover   *cluster.Handover
}

// New returns a daemon for a validated configuration read from
// configPath (a reload reads it again).
func New(cfg config.Config, configPath string, log *slog.Logger) *Daemon {
	// The path, taken now: after a package upgrade replaced the file,
	// /proc/self/exe names the deleted old binary.
	exe, err := os.Executable()
	if err != nil {
		log.Warn("cannot tell where tandemd's executable is; reloads will be refused", "err", err)
	}
	return &Daemon{cfg: cfg, log: log, exe: exe, configPath: configPath, reloads: make(chan struct{}, 1)}
}

// RequestReload asks Run to re-execute tandemd (ReloadSignal).
func (d *Daemon) RequestReload() {
	select {
	case d.reloads <- struct{}{}:
	default: // one is pending already
	}
}

// Handover is what Run let go of for a reload, nil after a stop: the
// caller then re-executes (Reexec).
func (d *Daemon) Handover() *cluster.Handover { return d.handover }

// Reexec replaces the process after Run returned with a Handover; it
// returns only on failure.
func (d *Daemon) Reexec() error { return d.reexec(*d.handover) }

// Run starts every component and blocks until ctx ends, then stops them in
// reverse order: the API first (so nobody is told "running" while
// PostgreSQL shuts down), then PostgreSQL.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.log.With("node", d.cfg.Node.Name)
	if err := os.MkdirAll(d.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("while creating state_dir: %w", err)
	}
	if err := service.CheckPrivate(d.cfg.StateDir); err != nil {
		return err
	}
	unlock, err := service.LockStateDir(d.cfg.StateDir)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := state.Open(d.cfg.StateDir, d.cfg.Node.Name)
	if err != nil {
		return err
	}
	log.Info("tandemd starting", "version", version.Version, "term", st.Term, "role", st.Role)
	reloaded := takeHandover(log)

	token, metricsToken, err := readTokens(d.cfg)
	if err != nil {
		return err
	}
	// A certificate rotation a crash interrupted is completed or cleared
	// before the certificate is loaded (identity.Settle).
	if note, err := identity.Settle(d.cfg.StateDir); err != nil {
		return err
	} else if note != "" {
		log.Warn("certificate rotation: " + note)
	}
	cert, err := identity.EnsureCert(d.cfg.StateDir, d.cfg.Node.Name, []string{d.cfg.Node.IP})
	if err != nil {
		return err
	}

	fingerprint := identity.Fingerprint(cert.Certificate[0])
	log.Info("node certificate", "fingerprint", fingerprint)
	// The node certificate is also this node's identity in the quorum of
	// automatic mode (etcd takes it as PEM files).
	certPEM, keyPEM, memberFP, err := identity.MemberCert(d.cfg.StateDir)
	if err != nil {
		return err
	}

	pg, err := postgres.New(postgres.Options{
		BinDir:          d.cfg.Postgres.BinDir,
		DataDir:         d.cfg.Postgres.DataDir,
		SocketDir:       d.cfg.Postgres.SocketDir,
		Port:            d.cfg.Postgres.Port,
		OSUser:          d.cfg.Postgres.OSUser,
		ListenAddresses: d.cfg.Postgres.ListenAddresses,
		Init:            d.cfg.Postgres.Init,
		StopTimeout:     d.cfg.Postgres.StopTimeout.D(),
		PasswordFile:    filepath.Join(d.cfg.StateDir, PasswordFile),
		DataChecksums:   d.cfg.Postgres.DataChecksums,
		InitdbOptions:   d.cfg.Postgres.InitdbOptions,
		HBA: postgres.HBA{
			ReplicationUser: cluster.ReplicationUser,
			SuperuserFrom:   d.cfg.SuperuserNetworks(),
			Rules:           d.cfg.Postgres.HBA,
		},
	}, log.With("component", "postgres"))
	if err != nil {
		return err
	}
	d.pg = pg
	notifier := notify.New(notify.Config{
		Command: d.cfg.Notify.Command, Webhook: d.cfg.Notify.Webhook, Events: d.cfg.Notify.Events,
		Retries: d.cfg.Notify.Retries, Timeout: d.cfg.Notify.Timeout.D(),
	}, log.With("component", "notify"))
	notifier.Start(ctx)
	// A holder on the same segment answers an ARP or NDP probe within a
	// millisecond; 100 ms (two probes) leaves a wide margin, and every
	// probe is part of a failover's outage.
	vip := clusterip.New(clusterip.Options{ProbeTimeout: 100 * time.Millisecond}, log.With("component", "clusterip"))
	// The DNS updater: read (its secret file too) once at start, so that a
	// key that cannot be read is said now, not at the next failover.
	var dnsUp *dnsupdate.Updater
	if d.cfg.DNSUpdate.Configured() {
		up, err := dnsupdate.New(d.cfg.DNSUpdate.Updater())
		if err != nil {
			return fmt.Errorf("dns_update: %w", err)
		}
		dnsUp = up
		log.Info("cluster DNS name updates configured", "dns", up.String())
	}
	var node *cluster.Node
	node = cluster.New(cluster.Config{
		Name:           d.cfg.Node.Name,
		IP:             d.cfg.Node.IP,
		APIPort:        service.APIPort(d.cfg.API.Listen),
		PGPort:         d.cfg.Postgres.Port,
		StateDir:       d.cfg.StateDir,
		Cert:           cert,
		Fingerprint:    fingerprint,
		MaxSlotWALKeep: d.cfg.Replication.MaxSlotWALKeep,
		SyncGrace:      d.cfg.Replication.SyncGrace.D(),
		AwayAfter:      d.cfg.Replication.AwayAfter.D(),
		PeerGrace:      d.cfg.Rejoin.PeerGrace.D(),
		SelfElect:      d.cfg.Rejoin.SelfElect,
		Services:       services(d.cfg.Services),
		Hook:           d.cfg.Hooks.OnRoleChange,
		HookLimit:      d.cfg.Hooks.Timeout.D(),
		QuorumDir:      filepath.Join(d.cfg.StateDir, service.QuorumDir),
		QuorumSelf:     quorumspec.Self(d.cfg, certPEM, memberFP),
		CertPEM:        certPEM,
		KeyPEM:         keyPEM,
		MaxLag:         d.cfg.MaxLagBytes(),
		Etcd:           cluster.EtcdFiles{CA: d.cfg.Quorum.Etcd.CAFile, Cert: d.cfg.Quorum.Etcd.CertFile, Key: d.cfg.Quorum.Etcd.KeyFile},
		SyncFiles:      d.cfg.Sync.Files,
		Upgrade: cluster.UpgradeConfig{
			Argv:       d.cfg.Upgrade.UpgradeArgv,
			Timeout:    d.cfg.Upgrade.Timeout.D(),
			Executable: d.exe,
			Reload: func() error {
				if err := d.checkNewBinary(context.Background()); err != nil {
					return err
				}
				d.RequestReload()
				return nil
			},
			ValidVersion: config.VersionRE.MatchString,
		},
		Watchdog:   cluster.WatchdogConfig{Mode: d.cfg.Watchdog.Mode, Device: d.cfg.Watchdog.Device},
		DNSUpdater: dnsUp,
		Notify: func(kind, about string, term int64, msg string) {
			cluster := ""
			if s := node.State(); s.Cluster != nil {
				cluster = s.Cluster.Name
			}
			notifier.Notify(notify.Event{Cluster: cluster, Node: d.cfg.Node.Name, About: about, Kind: kind, Term: term, Message: msg, At: time.Now().UTC()})
		},
	}, st, pg, vip, log.With("component", "cluster"))

	// The cluster IP's loop lives until vip.Stop below, not until the
	// signal: an operation finishing during shutdown may still move it.
	if err := vip.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	// The node takes its exclusion for the boot decision before the API
	// answers, so no operation can start on a node that does not know its
	// role yet; the API then answers (PostgreSQL "stopped") while it decides.
	if reloaded != nil {
		node.SetHandover(*reloaded)
	}
	node.Start()
	// The API first, so the node answers (PostgreSQL "stopped") while the
	// cluster logic decides in which role PostgreSQL may start.
	reg := prometheus.NewRegistry()
	reg.MustRegister(node, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	viewer, err := identity.EnsureViewerToken(d.cfg.StateDir)
	if err != nil {
		return err
	}
	// The node counts commits, so the page plots the primary's commit rate.
	var _ webui.CommitCounter = node
	ui := webui.New(webui.Config{Backend: node, AdminToken: token, ViewerToken: viewer, Log: log.With("component", "webui")})
	uiCtx, uiStop := context.WithCancel(ctx)
	uiDone := make(chan struct{})
	go func() { defer close(uiDone); ui.Run(uiCtx) }()
	defer func() { uiStop(); <-uiDone }()
	srv := api.NewServer(api.Config{
		Listen: d.cfg.API.Listen,
		Cert:   cert,
		// The node owns the certificate in force: a rotation changes it
		// for the next handshake, without a restart.
		GetCertificate: node.Certificate,
		Token:          token,
		Backend:        node,
		Log:            log.With("component", "api"),
		Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		MetricsAccess:  api.MetricsAccess{Token: metricsToken, Allow: d.cfg.MetricsAllow()},
		UI:             ui,
	})
	if err := srv.Start(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	d.srv, d.ui = srv, ui
	d.mu.Unlock()
	if err := service.Notify("READY=1\nSTATUS=node API listening; role " + string(st.Role)); err != nil {
		log.Warn("could not tell systemd tandemd is ready", "err", err)
	}
	run := runInfo{PID: os.Getpid(), Version: version.Version, Started: time.Now().UTC(), Ready: true}
	if err := writeRunInfo(d.cfg.StateDir, run); err != nil {
		log.Warn("could not write the run file; `tandemd --reload` will not find this tandemd", "err", err)
	}

	reload := false
	for !reload {
		select {
		case <-ctx.Done():
		case <-d.reloads:
			if err := d.checkNewBinary(ctx); err != nil {
				log.Error("reload refused; this tandemd runs on unchanged", "err", err)
				run.ReloadError, run.ReloadErrorAt = err.Error(), time.Now().UTC()
				_ = writeRunInfo(d.cfg.StateDir, run)
				continue
			}
			reload = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	if reload {
		log.Info("tandemd reloading: PostgreSQL and the cluster IP stay as they are", "exe", d.exe)
		_ = service.Notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading", monoNow()/1000))
	} else {
		log.Info("tandemd stopping")
		_ = service.Notify("STOPPING=1")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Stop(sctx)
	cancel()
	// An operation in flight (a switchover takes well under a second)
	// finishes before anything it relies on stops; one that outlasts the
	// grace is cancelled and rolls back, or resumes at the next start.
	node.Stop(OperationGrace)
	if reload && ctx.Err() != nil {
		// A stop arrived while the reload was under way: stop instead.
		log.Info("tandemd stopping instead of reloading")
		reload = false
	}
	if reload {
		// Let go of everything without stopping it: the process this one
		// becomes adopts PostgreSQL, keeps the cluster IP, resumes the lease.
		h := node.PrepareHandover()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := vip.Detach(sctx); err != nil {
			log.Error("could not detach the cluster IP manager", "err", err)
		}
		if err := d.pg.Detach(sctx); err != nil {
			log.Error("could not detach the PostgreSQL supervisor", "err", err)
		}
		cancel()
		d.handover = &h
		log.Info("tandemd let go of PostgreSQL and the cluster IP for the reload")
		return nil
	}
	// The cluster IP goes before PostgreSQL, so clients see a clean
	// "nobody here" rather than connections refused by a stopping server.
	sctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	if err := vip.Stop(sctx); err != nil {
		log.Error("could not remove the cluster IP", "err", err)
	}
	cancel()
	d.stopPostgres(log)
	// Last, with PostgreSQL down: a primary in automatic mode resigns the
	// leader key, so the secondary takes over now rather than when the
	// lease runs out.
	node.CloseQuorum()
	log.Info("tandemd stopped")
	return nil
}

// ReloadTokens re-reads the admin token (creating a new one if the file
// was removed) and the metrics token, and puts them in force (SIGHUP): a
// token is rotated without restarting tandemd, and so PostgreSQL. On any
// error the tokens in force stay.
func (d *Daemon) ReloadTokens() error {
	d.mu.Lock()
	srv, ui := d.srv, d.ui
	d.mu.Unlock()
	if srv == nil {
		return errors.New("the node API is not running yet")
	}
	admin, metrics, err := readTokens(d.cfg)
	if err != nil {
		return err
	}
	viewer, err := identity.EnsureViewerToken(d.cfg.StateDir)
	if err != nil {
		return err
	}
	srv.SetTokens(admin, metrics)
	if ui != nil {
		ui.SetTokens(admin, viewer)
	}
	return nil
}

func readTokens(cfg config.Config) (admin, metrics string, err error) {
	if admin, err = identity.EnsureToken(cfg.StateDir); err != nil {
		return "", "", err
	}
	if cfg.Metrics.TokenFile != "" {
		if metrics, err = config.ReadMetricsToken(cfg.Metrics.TokenFile); err != nil {
			return "", "", fmt.Errorf("metrics.token_file: %w", err)
		}
	}
	return admin, metrics, nil
}

// services turns configured units into start/stop commands.
func services(in []config.Service) []cluster.Service {
	var out []cluster.Service
	for _, s := range in {
		sv := cluster.Service{Name: s.Name, Start: s.Start, Stop: s.Stop, Timeout: s.Timeout.D()}
		if s.Unit != "" {
			sv.Start = []string{"/usr/bin/systemctl", "start", s.Unit}
			sv.Stop = []string{"/usr/bin/systemctl", "stop", s.Unit}
		}
		out = append(out, sv)
	}
	return out
}

func (d *Daemon) stopPostgres(log *slog.Logger) {
	// Three escalation stages plus slack; a second signal to tandemd exits
	// at once if an operator will not wait.
	sctx, cancel := context.WithTimeout(context.Background(), 3*d.cfg.Postgres.StopTimeout.D()+10*time.Second)
	defer cancel()
	if err := d.pg.Stop(sctx); err != nil {
		log.Error("PostgreSQL did not stop cleanly", "err", err)
	}
}
