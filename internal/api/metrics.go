package api

import (
	"net/http"
	"net/netip"
)

// DefaultMetricsInFlight bounds the scrapes of /metrics served at once.
const DefaultMetricsInFlight = 4

// MetricsAccess says who may scrape GET /metrics. The zero value serves
// anyone who reaches the port, as a Prometheus exporter usually does.
type MetricsAccess struct {
	// Token, when set, must come as "Authorization: Bearer <Token>"
	// (Prometheus: authorization.credentials_file); Server.SetTokens
	// replaces it.
	Token string
	// Allow, when set, admits only clients from these networks.
	Allow []netip.Prefix
	// InFlight bounds the scrapes served at once; more get 503 at once
	// (0: DefaultMetricsInFlight).
	InFlight int
}

// serveMetrics checks the client's address, then its token, then takes one
// of the in-flight slots: a refused or excess scrape costs next to nothing.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	acc := s.cfg.MetricsAccess
	_, acc.Token = s.tokens()
	if len(acc.Allow) > 0 && !addrAllowed(r.RemoteAddr, acc.Allow) {
		s.writeError(w, r, Errorf(http.StatusForbidden, CodeForbidden, "/metrics answers only the networks in metrics.allow of this node's configuration"))
		return
	}
	if acc.Token != "" && !bearerMatches(r, acc.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tandem metrics"`)
		s.writeError(w, r, Errorf(http.StatusUnauthorized, CodeUnauthorized, "missing or wrong metrics token: send \"Authorization: Bearer <token>\" with the token of metrics.token_file (Prometheus: authorization.credentials_file)"))
		return
	}
	select {
	case s.metricsSlots <- struct{}{}:
		defer func() { <-s.metricsSlots }()
	default:
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, Errorf(http.StatusServiceUnavailable, CodeUnavailable, "%d scrapes of /metrics are already being served; try again in a moment", cap(s.metricsSlots)))
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

func addrAllowed(remote string, allow []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
