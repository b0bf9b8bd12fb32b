package webui

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/console"
)

// Operations the page can run.
const (
	OpSwitchover = "switchover"
	OpFailover   = "failover"
)

// PlanRequest is POST /ui/api/plan, and with Confirm POST /ui/api/run.
type PlanRequest struct {
	Op            string `json:"op"`
	AllowDataLoss bool   `json:"allow_data_loss,omitempty"`
	// Confirm is the page's confirmation dialog answered yes; run
	// refuses without it.
	Confirm bool `json:"confirm,omitempty"`
}

// Plan is what the command line prints before it asks: the steps, the
// warnings, the question; or why it refuses, with nothing sent.
type Plan struct {
	Op       string              `json:"op"`
	Lines    []string            `json:"lines"`
	Warnings []string            `json:"warnings,omitempty"`
	Paths    []console.PathCheck `json:"paths,omitempty"`
	Refused  string              `json:"refused,omitempty"`
	Question string              `json:"question,omitempty"`
	// On is the node that runs the operation.
	On string `json:"on,omitempty"`
}

// RunResult answers POST /ui/api/run.
type RunResult struct {
	Plan       Plan                  `json:"plan"`
	Switchover *api.SwitchoverResult `json:"switchover,omitempty"`
	Failover   *api.FailoverResult   `json:"failover,omitempty"`
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request, _ *session) {
	var req PlanRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	p, _, err := s.makePlan(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, _ *session) {
	var req PlanRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if !req.Confirm {
		writeError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "the %s was not confirmed: send confirm true once the plan is accepted. Nothing was sent", req.Op))
		return
	}
	// The checks run again: the plan the page showed may be stale.
	p, pv, err := s.makePlan(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	if p.Refused != "" {
		writeJSON(w, http.StatusConflict, struct {
			api.ErrorBody
			Plan Plan `json:"plan"`
		}{api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeConflict, Message: p.Refused}}, p})
		return
	}
	out := RunResult{Plan: p}
	s.cfg.Log.Info("web console runs an operation", "op", req.Op, "on", p.On, "allow_data_loss", req.AllowDataLoss)
	switch req.Op {
	case OpSwitchover:
		sreq := api.SwitchoverRequest{AllowDataLoss: req.AllowDataLoss}
		var res api.SwitchoverResult
		if pv.selfPrimary {
			res, err = s.cfg.Backend.Switchover(r.Context(), sreq)
		} else {
			// The primary runs the switchover: ask it, over the peer link.
			err = s.peerClient(pv.self.Peer).Do(r.Context(), http.MethodPost, "/ui/peer/switchover", sreq, &res)
		}
		out.Switchover = &res
	case OpFailover:
		var res api.FailoverResult
		res, err = s.cfg.Backend.Failover(r.Context(), api.FailoverRequest{})
		out.Failover = &res
	}
	if err != nil {
		s.cfg.Log.Warn("web console operation failed", "op", req.Op, "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) peerSwitchover(w http.ResponseWriter, r *http.Request) {
	var req api.SwitchoverRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	res, err := s.cfg.Backend.Switchover(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// pairView is both nodes as this one sees them now.
type pairView struct {
	self        api.ClusterView
	peer        *PeerStatus // nil: the peer did not answer
	peerErr     error
	selfPrimary bool
}

func (s *Server) look(ctx context.Context) (pairView, error) {
	v, err := s.cfg.Backend.View(ctx)
	if err != nil {
		return pairView{}, err
	}
	pv := pairView{self: v, selfPrimary: v.Node.Role == "primary"}
	if v.Peer == nil {
		return pv, nil
	}
	pctx, cancel := context.WithTimeout(ctx, 2*peerTimeout)
	defer cancel()
	p, err := s.askPeer(pctx, v.Peer)
	if err != nil {
		pv.peerErr = err
	} else {
		pv.peer = &p
	}
	return pv, nil
}

func (s *Server) makePlan(ctx context.Context, req PlanRequest) (Plan, pairView, error) {
	pv, err := s.look(ctx)
	if err != nil {
		return Plan{}, pv, err
	}
	switch req.Op {
	case OpSwitchover:
		return switchoverPlan(pv, req.AllowDataLoss), pv, nil
	case OpFailover:
		return s.failoverPlan(ctx, pv), pv, nil
	}
	return Plan{}, pv, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "op %q is neither %q nor %q", req.Op, OpSwitchover, OpFailover)
}

// switchoverPlan checks that both nodes answer in their roles, then makes
// `tandem switchover`'s own plan (console.PlanSwitchover).
func switchoverPlan(pv pairView, allowLoss bool) Plan {
	p := Plan{Op: OpSwitchover}
	self := pv.self
	if self.Peer == nil || self.Record == nil {
		p.Refused = fmt.Sprintf("%s is not in an assembled cluster: there is nothing to switch to. Nothing was sent", self.Node.Name)
		return p
	}
	if pv.peer == nil {
		p.Refused = fmt.Sprintf("the peer %s does not answer (%v): a switchover needs both nodes. Nothing was sent", self.Peer.Name, pv.peerErr)
		return p
	}
	primary, secondary := self, pv.peer.View
	if !pv.selfPrimary {
		primary, secondary = pv.peer.View, self
	}
	if primary.Node.Role != "primary" {
		p.Refused = fmt.Sprintf("no node answers as primary (%s is %s, %s is %s): a switchover needs both nodes. If the primary is gone, see failover. Nothing was sent", self.Node.Name, self.Node.Role, pv.peer.View.Node.Name, pv.peer.View.Node.Role)
		return p
	}
	if secondary.Node.Role != "secondary" {
		p.Refused = fmt.Sprintf("%s is %s, not secondary: there is nothing to switch to. Nothing was sent", secondary.Node.Name, secondary.Node.Role)
		return p
	}
	p.On = primary.Node.Name
	sp := console.PlanSwitchover(primary.Node.Cluster, primary.Node.Name, secondary.Node.Name, primary.Node.Term, primary.Replication, allowLoss, "allow data loss")
	p.Lines, p.Refused, p.Question = sp.Lines, sp.Refused, sp.Question
	if sp.Warning != "" {
		p.Warnings = append(p.Warnings, sp.Warning)
	}
	if p.Refused != "" {
		p.Question = ""
	}
	return p
}

// failoverPlan refuses while the primary answers on any path, as
// `tandem failover` does, naming the path; otherwise it shows what the
// secondary last heard and whether the cluster was synchronized.
func (s *Server) failoverPlan(ctx context.Context, pv pairView) Plan {
	p := Plan{Op: OpFailover}
	self := pv.self
	if self.Peer == nil || self.Record == nil {
		p.Refused = fmt.Sprintf("%s is not in an assembled cluster: there is nothing to fail over to. Nothing was sent", self.Node.Name)
		return p
	}
	if pv.selfPrimary {
		p.Refused = fmt.Sprintf("%s answers as primary (term %d) by the node API (it served this page): failover refused; a running primary must not get a twin. Use switchover for a planned change. Nothing was sent", self.Node.Name, self.Node.Term)
		return p
	}
	if self.Node.Role != "secondary" {
		p.Refused = fmt.Sprintf("%s is %s, not secondary: there is nothing to fail over to. Nothing was sent", self.Node.Name, self.Node.Role)
		return p
	}
	if pv.peer != nil && pv.peer.View.Node.Role == "primary" {
		p.Refused = fmt.Sprintf("%s answers as primary (term %d) by the node API (%s): failover refused; a running primary must not get a twin. Use switchover for a planned change. Nothing was sent", self.Peer.Name, pv.peer.View.Node.Term, peerAddr(self.Peer))
		return p
	}
	known := map[string]string{self.Peer.Fingerprint: self.Peer.Name, self.Node.Fingerprint: self.Node.Name}
	if self.Peer.NextFingerprint != "" {
		known[self.Peer.NextFingerprint] = self.Peer.Name
	}
	p.Paths = console.CheckPrimaryPaths(ctx, 0, console.PrimaryPaths{
		Name: self.Peer.Name, APIAddr: peerAddr(self.Peer), IP: self.Peer.IP,
		APIPort: self.Peer.APIPort, PGPort: self.Peer.PGPort, ClusterIP: self.Record.ClusterIP, Known: known,
	})
	var reached []string
	for _, pc := range p.Paths {
		if pc.Reachable {
			reached = append(reached, fmt.Sprintf("%s (%s)", pc.Path, pc.Address))
		}
	}
	if len(reached) > 0 {
		p.Refused = fmt.Sprintf("the primary %s still answers by %v: failover refused; a running primary must not get a twin. Use switchover for a planned change, or stop it first. Nothing was sent", self.Peer.Name, reached)
		return p
	}
	p.On = self.Node.Name
	p.Lines = append(p.Lines, fmt.Sprintf("Failover in cluster %s (term %d → %d):", self.Node.Cluster, self.Node.Term, self.Node.Term+1))
	for _, pc := range p.Paths {
		p.Lines = append(p.Lines, fmt.Sprintf("primary %s via %s (%s): silent (%.0f ms)", self.Peer.Name, pc.Path, pc.Address, pc.MS))
	}
	if c := self.PeerContact; c != nil {
		if c.SilentSeconds < 0 {
			p.Lines = append(p.Lines, fmt.Sprintf("%s has not heard from the primary since it started.", self.Node.Name))
		} else {
			p.Lines = append(p.Lines, fmt.Sprintf("%s last heard from the primary %s ago (%s).", self.Node.Name, time.Duration(c.SilentSeconds*float64(time.Second)).Round(100*time.Millisecond), c.LastHeard))
		}
		if c.Synchronized {
			p.Lines = append(p.Lines, "At that moment the cluster was synchronized: no acknowledged commit is lost.")
		} else {
			p.Warnings = append(p.Warnings, "At that moment the cluster was NOT synchronized: commits the secondary had not received are LOST.")
		}
	}
	p.Lines = append(p.Lines, fmt.Sprintf("%s will promote, take the cluster IP and start the services; the cluster stays degraded until %s rejoins.", self.Node.Name, self.Peer.Name))
	p.Question = fmt.Sprintf("Make %s the primary?", self.Node.Name)
	return p
}
