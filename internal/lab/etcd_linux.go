//go:build linux

package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// startEtcdCluster makes the external etcd's certificates, starts its three
// members and waits until the cluster answers /health (it has a leader)
// as a node would reach it: from node a's namespace, with a's client
// certificate.
func startEtcdCluster(ctx context.Context, log *slog.Logger, l *Layout, out io.Writer) error {
	bin, err := lookTool(EtcdBinary)
	if err != nil {
		return fmt.Errorf("--etcd-external runs Debian's etcd on hosts %v: %w", EtcdHosts, err)
	}
	if err := writeEtcdPKI(l); err != nil {
		return err
	}
	for _, h := range l.EtcdMembers() {
		if _, err := startEtcd(log, l, h, bin); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "lab %s: etcd started on %v (%s); waiting for its quorum\n", l.Name, EtcdHosts, strings.Join(l.EtcdEndpoints(), ","))
	return waitEtcd(ctx, l, l.EtcdMembers(), 30*time.Second)
}

// startEtcd starts h's member in h's namespace.
func startEtcd(log *slog.Logger, l *Layout, h Host, bin string) (int, error) {
	return startDetached(log, h.Netns, l.EtcdLogPath(h.Name), l.EtcdPidPath(h.Name), bin, l.EtcdArgs(h)...)
}

// waitEtcd polls /health of each member in hosts until it says the member
// has a leader, or timeout passes.
func waitEtcd(ctx context.Context, l *Layout, hosts []Host, timeout time.Duration) error {
	a := l.Nodes()[0]
	ca, err := os.ReadFile(l.EtcdCAPath())
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	kp, err := tls.LoadX509KeyPair(l.EtcdCertPath(a.Name), l.EtcdKeyPath(a.Name))
	if err != nil {
		return err
	}
	tr := &http.Transport{
		DialContext:       dialerIn(a.Netns),
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for _, h := range hosts {
		url := "https://" + net.JoinHostPort(h.IP, strconv.Itoa(EtcdClientPort)) + "/health"
		for {
			err := etcdHealthy(ctx, hc, url)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd on %s did not become healthy within %s (%v); see %s", h.Name, timeout, err, l.EtcdLogPath(h.Name))
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func etcdHealthy(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return errors.New(strings.TrimSpace(resp.Status + " " + string(body)))
	}
	return nil
}
