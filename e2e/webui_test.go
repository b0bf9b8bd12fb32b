//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestWebUI drives the web console (/ui/ on node a's API port) in
// Debian's headless Chromium: login refused with a bad token, cookie
// flags and CSRF, both nodes and their roles, a failover refused while
// the primary runs, a switchover from the page and back with the roles
// swapped on the page within 2 s, both nodes still shown with node a,
// whose page it is, powered off, and then a failover to b from the page. Chromium runs on this machine; its connections go
// through a CONNECT proxy the test runs that dials from the lab's client
// host, so the page reaches the nodes as a browser on the client would.
// The lab's node certificates are self-signed (pinned by the console, not
// signed by a CA a browser knows): Chromium runs with
// --ignore-certificate-errors. Screenshots of each step are written to
// t.ArtifactDir() (kept with go test -artifacts -outputdir DIR).
func TestWebUI(t *testing.T) {
	needRoot(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the web console's test needs Debian's chromium (scripts/deps.sh --test installs it): %v", err)
	}
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	a := c.env.Nodes[0]
	aAddr := net.JoinHostPort(a.IP, "7400")
	base := "https://" + aAddr + "/ui/"

	proxy := c.connectProxy(t, "client")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root, in a test
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.ProxyServer("http://"+proxy),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
		chromedp.WindowSize(1200, 1100),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer tcancel()

	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}
	// status asks the node what the page's script would, from the page.
	status := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return n
	}
	// roles reads the node cards' roles as the page shows them.
	roles := func() map[string]string {
		m, _ := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("#nodes .node")].map(e => [e.dataset.node, e.dataset.role]))`))
		return m
	}
	waitRoles := func(what string, timeout time.Duration, want map[string]string) time.Duration {
		t.Helper()
		return eventually(t, what, timeout, func() (bool, string) {
			got := roles()
			return got["a"] == want["a"] && got["b"] == want["b"], fmt.Sprintf("the page shows %v", got)
		})
	}

	start := time.Now()
	do("open the page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("token")))
	// Screen-reader basics: every field has a label and every button a
	// name, and the token field has the focus.
	if bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input")].filter(i => i.labels.length === 0).map(i => i.id).concat(
		[...document.querySelectorAll("button")].filter(b => b.textContent.trim() === "").map(b => b.id))`)); err != nil || len(bad) > 0 {
		t.Fatalf("fields without a label or buttons without a name: %v %v", bad, err)
	}
	if id, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`)); id != "token" {
		t.Fatalf("the focus is on %q, want the token field", id)
	}
	// A wrong token: refused on the page, no session.
	do("a login with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token"),
		chromedp.Click(chromedp.ID("login-button")),
	)
	eventually(t, "the page says a wrong token is refused", 5*time.Second, func() (bool, string) {
		s := text("login-error")
		return strings.Contains(s, "refused"), s
	})
	shot("1-bad-token-refused")
	// A missing token is refused by the node too (the field is required
	// on the page, so ask as the page would).
	if code := status(`fetch("login", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"token": ""}'}).then(r => r.status)`); code != http.StatusUnauthorized {
		t.Fatalf("login without a token: %d, want 401", code)
	}
	if code := status(`fetch("api/status").then(r => r.status)`); code != http.StatusUnauthorized {
		t.Fatalf("status after refused logins: %d, want 401", code)
	}

	// The admin token: both nodes, their roles, who answered.
	do("login with the admin token",
		chromedp.SetValue(chromedp.ID("token"), a.Token),
		chromedp.Click(chromedp.ID("login-button")),
		chromedp.WaitVisible(chromedp.CSS("#nodes .node")),
	)
	waitRoles("the page shows a primary and b secondary", 10*time.Second, map[string]string{"a": "primary", "b": "secondary"})
	if s := text("answered"); !strings.Contains(s, "Answered by a") {
		t.Fatalf("the page says %q, want it answered by a", s)
	}
	// The ring buffer the plots draw has the primary's samples.
	if n := status(`fetch("api/status").then(r => r.json()).then(s => s.history.filter(h => h.role === "primary").length)`); n < 1 {
		t.Fatalf("the status has %d samples of the primary, want at least one", n)
	}
	shot("2-both-nodes")

	// The session cookie's flags, as the browser stored them.
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	if cs := res.Cookies; len(cs) != 1 || !cs[0].HTTPOnly || !cs[0].Secure || cs[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("cookies %+v: want one session cookie, HttpOnly, Secure, SameSite=Strict", cs)
	}
	if n := status(`document.cookie.length`); n != 0 {
		t.Fatalf("the page's script sees %d characters of cookies, want none (HttpOnly)", n)
	}
	// The cookie alone does not make a POST: the CSRF token is needed.
	if code := status(`fetch("api/plan", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"op": "switchover"}'}).then(r => r.status)`); code != http.StatusForbidden {
		t.Fatalf("POST without the CSRF header: %d, want 403", code)
	}
	// The viewer token, which tandemd wrote beside the admin token, reads
	// but may not act.
	c.viewerRefused(t, aAddr)

	// A failover while the primary runs: refused, naming the path.
	do("ask for a failover", chromedp.Click(chromedp.ID("failover")), chromedp.WaitVisible(chromedp.ID("confirm")))
	eventually(t, "the page refuses a failover while a answers", 5*time.Second, func() (bool, string) {
		s := text("confirm-refused")
		return strings.Contains(s, "answers as primary") && strings.Contains(s, "node API"), s
	})
	if hidden, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("confirm-yes").hidden`)); !hidden {
		t.Fatal("a refused failover still offers to run it")
	}
	shot("3-failover-refused")
	do("close the refusal", chromedp.Click(chromedp.ID("confirm-no")), chromedp.WaitNotVisible(chromedp.ID("confirm")))
	if r := c.role("a"); r != "primary" {
		t.Fatalf("after the refused failover a is %s", r)
	}

	// A switchover: the plan, the question, then the roles swap on the page.
	do("ask for a switchover", chromedp.Click(chromedp.ID("switchover")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if q := text("confirm-question"); !strings.Contains(q, "from a to b") {
		t.Fatalf("the switchover asks %q", q)
	}
	shot("4-switchover-plan")
	do("confirm the switchover", chromedp.Click(chromedp.ID("confirm-yes")))
	took := waitRoles("the page shows the roles swapped within 2 s", 2*time.Second, map[string]string{"a": "secondary", "b": "primary"})
	t.Logf("the page showed the roles swapped %s after the confirmation", took.Round(time.Millisecond))
	eventually(t, "the page says the switchover is done", 5*time.Second, func() (bool, string) {
		s := text("action-result")
		return strings.Contains(s, "switchover done"), s
	})
	shot("5-switchover-done")
	c.waitStatus("the console sees b primary and a streaming", 20*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})

	// And back, on the page of what is now the secondary: b runs it.
	do("ask for a switchover back", chromedp.Click(chromedp.ID("switchover")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if q := text("confirm-question"); !strings.Contains(q, "from b to a") {
		t.Fatalf("the switchover back asks %q", q)
	}
	do("confirm the switchover back", chromedp.Click(chromedp.ID("confirm-yes")))
	took = waitRoles("the page shows the roles swapped back within 2 s", 2*time.Second, map[string]string{"a": "primary", "b": "secondary"})
	t.Logf("the page showed the roles swapped back %s after the confirmation", took.Round(time.Millisecond))
	c.waitStatus("the console sees a primary and b streaming", 20*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "primary" && r["b"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
	})

	// Node a, whose page this is and the primary, powered off: the page
	// asks b, and shows both nodes.
	c.powerOff("a")
	eventually(t, "the page shows both nodes, answered by b, with a unreachable", 15*time.Second, func() (bool, string) {
		got, ans := roles(), text("answered")
		return got["a"] == "down" && got["b"] == "secondary" && strings.Contains(ans, "Answered by b"), fmt.Sprintf("roles %v, %q", got, ans)
	})
	shot("6-opened-node-off")

	// A failover from the page, now answered by b: every path to a is
	// silent, the plan asks, and b becomes primary.
	do("ask for a failover with a gone", chromedp.Click(chromedp.ID("failover")), chromedp.WaitVisible(chromedp.ID("confirm")))
	eventually(t, "the failover plan asks to make b the primary", 5*time.Second, func() (bool, string) {
		q, refused := text("confirm-question"), text("confirm-refused")
		return strings.Contains(q, "Make b the primary?") && refused == "", fmt.Sprintf("question %q, refused %q", q, refused)
	})
	if lines := text("confirm-lines"); !strings.Contains(lines, "silent") {
		t.Fatalf("the failover plan does not show the silent paths: %q", lines)
	}
	shot("7-failover-plan")
	do("confirm the failover", chromedp.Click(chromedp.ID("confirm-yes")))
	waitRoles("the page shows b primary after the failover", 15*time.Second, map[string]string{"a": "down", "b": "primary"})
	eventually(t, "the page says the failover is done", 10*time.Second, func() (bool, string) {
		s := text("action-result")
		return strings.Contains(s, "failover done"), s
	})
	shot("8-failover-done")
	if r := c.role("b"); r != "primary" {
		t.Fatalf("after the failover from the page the console sees b as %s", r)
	}
	t.Logf("browser part took %s", time.Since(start).Round(100*time.Millisecond))
}

// viewerRefused logs in with node a's viewer token from the client host
// and checks that the session reads the status and may not run anything.
func (l *testLab) viewerRefused(t *testing.T, addr string) {
	t.Helper()
	viewer, err := os.ReadFile(filepath.Join(l.nodeDir("a"), "state", "viewer-token"))
	if err != nil {
		t.Fatalf("tandemd made no viewer token beside the admin token: %v", err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, _, a string) (net.Conn, error) { return l.dialFrom("client", a, 5*time.Second) },
		// The test's own client: the node's certificate is self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test client, like the browser's flag
	}}
	defer hc.CloseIdleConnections()
	post := func(path, csrf, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", "https://"+addr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set("X-CSRF-Token", csrf)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	tok, _ := json.Marshal(map[string]string{"token": strings.TrimSpace(string(viewer))})
	resp, body := post("/ui/login", "", string(tok))
	var lr struct{ Role, CSRF string }
	_ = json.Unmarshal(body, &lr)
	if resp.StatusCode != http.StatusOK || lr.Role != "viewer" {
		t.Fatalf("viewer login: %d %s", resp.StatusCode, body)
	}
	sresp, err := hc.Get("https://" + addr + "/ui/api/status")
	if err != nil || sresp.StatusCode != http.StatusOK {
		t.Fatalf("viewer status: %v %v", sresp, err)
	}
	sresp.Body.Close()
	resp, body = post("/ui/api/run", lr.CSRF, `{"op":"switchover","confirm":true}`)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("viewer switchover: %d %s, want 403", resp.StatusCode, body)
	}
}

// connectProxy serves HTTP CONNECT on this machine's loopback and opens
// each tunnel from host's namespace: Chromium, on this machine, reaches
// the lab as that host does. It stops with the test.
func (l *testLab) connectProxy(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := l.dialFrom(host, r.Host, 3*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			up.Close()
			return
		}
		down, rw, err := hj.Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(up, rw); up.Close() }()
		go func() { defer wg.Done(); _, _ = io.Copy(down, up); down.Close() }()
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}
