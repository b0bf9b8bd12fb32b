package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-ha/tandem/internal/identity"
)

func metricsServer(acc MetricsAccess, h http.Handler) http.Handler {
	b := &fakeBackend{info: NodeInfo{Name: "a", Postgres: PostgresInfo{State: "running"}}}
	return NewServer(Config{Token: testToken, Backend: b, Log: slog.New(slog.DiscardHandler), Metrics: h, MetricsAccess: acc}).Handler()
}

var okMetrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("tandem_term 1\n")) })

func scrape(h http.Handler, remote, auth string) *http.Response {
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = remote
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestMetricsOpenByDefault(t *testing.T) {
	if res := scrape(metricsServer(MetricsAccess{}, okMetrics), "198.51.100.7:40000", ""); res.StatusCode != 200 {
		t.Fatalf("an open /metrics answered %d", res.StatusCode)
	}
}

func TestMetricsToken(t *testing.T) {
	const tok = "metrics-0123456789abcdef"
	h := metricsServer(MetricsAccess{Token: tok}, okMetrics)
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + tok + "x", "Basic " + tok, "Bearer " + testToken} {
		res := scrape(h, "10.0.0.5:40000", auth)
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: %d (WWW-Authenticate %q), want 401 with a challenge", auth, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	if res := scrape(h, "10.0.0.5:40000", "Bearer "+tok); res.StatusCode != 200 {
		t.Errorf("the right token: %d", res.StatusCode)
	}
}

func TestMetricsAllow(t *testing.T) {
	h := metricsServer(MetricsAccess{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00:77::100/128")}}, okMetrics)
	for remote, want := range map[string]int{
		"10.0.0.5:40000":          200,
		"[::ffff:10.0.0.9]:40000": 200, // IPv4 on a dual-stack socket
		"[fd00:77::100]:40000":    200,
		"10.0.1.5:40000":          403,
		"[fd00:77::101]:40000":    403,
		"garbage":                 403,
	} {
		if res := scrape(h, remote, ""); res.StatusCode != want {
			t.Errorf("from %s: %d, want %d", remote, res.StatusCode, want)
		}
	}
	// Both restrictions: the address and the token.
	h = metricsServer(MetricsAccess{Token: "metrics-0123456789abcdef", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, okMetrics)
	if res := scrape(h, "10.0.1.5:40000", "Bearer metrics-0123456789abcdef"); res.StatusCode != 403 {
		t.Errorf("token from outside the allowed networks: %d, want 403", res.StatusCode)
	}
	if res := scrape(h, "10.0.0.5:40000", ""); res.StatusCode != 401 {
		t.Errorf("allowed network without the token: %d, want 401", res.StatusCode)
	}
}

// TestMetricsInFlightBound: scrapes beyond the bound are answered 503 at
// once instead of queueing; once one finishes, the next is served.
func TestMetricsInFlightBound(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	slow := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered.Done()
		<-release
		_, _ = w.Write([]byte("ok\n"))
	})
	h := metricsServer(MetricsAccess{InFlight: 3}, slow)
	entered.Add(3)
	done := make(chan int, 3)
	for range 3 {
		go func() { done <- scrape(h, "10.0.0.5:40000", "").StatusCode }()
	}
	entered.Wait()
	start := time.Now()
	res := scrape(h, "10.0.0.5:40000", "")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("a fourth scrape while three are served: %d (Retry-After %q), want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if time.Since(start) > time.Second {
		t.Errorf("the refused scrape waited %s", time.Since(start))
	}
	close(release)
	for range 3 {
		if code := <-done; code != 200 {
			t.Errorf("a scrape within the bound: %d", code)
		}
	}
	entered.Add(1)
	if res := scrape(h, "10.0.0.5:40000", ""); res.StatusCode != 200 {
		t.Errorf("after the others finished: %d", res.StatusCode)
	}
}

// TestPrometheusExampleScrapes scrapes a node API over TLS the way
// docs/examples/prometheus.yml says: the node certificate as ca_file, the
// token from credentials_file as a bearer token.
func TestPrometheusExampleScrapes(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ScrapeConfigs []struct {
			Scheme      string `yaml:"scheme"`
			MetricsPath string `yaml:"metrics_path"`
			TLS         struct {
				CAFile string `yaml:"ca_file"`
			} `yaml:"tls_config"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the example is not YAML: %v", err)
	}
	if len(doc.ScrapeConfigs) != 1 {
		t.Fatalf("want one scrape config, got %d", len(doc.ScrapeConfigs))
	}
	sc := doc.ScrapeConfigs[0]
	if sc.Scheme != "https" || sc.MetricsPath != "/metrics" || sc.TLS.CAFile == "" || sc.Authorization.Type != "Bearer" || sc.Authorization.CredentialsFile == "" {
		t.Fatalf("the example should scrape https /metrics with a ca_file and a Bearer credentials_file: %+v", sc)
	}

	dir := t.TempDir()
	cert, err := identity.EnsureCert(dir, "a", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef0123456789abcdef"
	srv := NewServer(Config{
		Listen: "127.0.0.1:0", Cert: cert, Token: testToken,
		Backend: &fakeBackend{}, Log: slog.New(slog.DiscardHandler),
		Metrics: okMetrics, MetricsAccess: MetricsAccess{Token: token},
	})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())

	caFile, _ := os.ReadFile(filepath.Join(dir, identity.CertFile)) // ca_file
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caFile) {
		t.Fatal("node.crt is not PEM")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for auth, want := range map[string]int{"Bearer " + token: 200, "": 401} {
		req, _ := http.NewRequest("GET", "https://"+srv.Addr()+sc.MetricsPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("scraping with the node certificate as ca_file: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("scrape with authorization %q: %d, want %d", auth, res.StatusCode, want)
		}
	}
}

// TestSetTokensRotates: a rotated admin or metrics token is in force from
// the next request, and the old one no longer is.
func TestSetTokensRotates(t *testing.T) {
	b := &fakeBackend{info: NodeInfo{Name: "a"}}
	s := NewServer(Config{Token: testToken, Backend: b, Log: slog.New(slog.DiscardHandler), Metrics: okMetrics, MetricsAccess: MetricsAccess{Token: "metrics-old-0123456789"}})
	h := s.Handler()
	const newAdmin, newMetrics = "fedcba9876543210fedcba9876543210-new", "metrics-new-0123456789"
	s.SetTokens(newAdmin, newMetrics)
	for auth, want := range map[string]int{"Bearer " + testToken: 401, "Bearer " + newAdmin: 200} {
		if res, _ := do(t, h, "GET", "/v1/node", auth); res.StatusCode != want {
			t.Errorf("/v1/node with %q: %d, want %d", auth, res.StatusCode, want)
		}
	}
	for auth, want := range map[string]int{"Bearer metrics-old-0123456789": 401, "Bearer " + newMetrics: 200} {
		if res := scrape(h, "10.0.0.5:4000", auth); res.StatusCode != want {
			t.Errorf("/metrics with %q: %d, want %d", auth, res.StatusCode, want)
		}
	}
	s.SetTokens(newAdmin, "") // metrics.token_file no longer asks for one
	if res := scrape(h, "10.0.0.5:4000", ""); res.StatusCode != 200 {
		t.Errorf("/metrics without a metrics token in force: %d", res.StatusCode)
	}
}
