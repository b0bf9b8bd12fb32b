package console

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// EventsOutput is `tandem events -o json`.
type EventsOutput struct {
	// Source is the node the events were read from; FromPrimary is false
	// when the primary did not answer and they are the secondary's
	// replicated copy, which may lack the latest.
	Source      string      `json:"source"`
	Address     string      `json:"address"`
	FromPrimary bool        `json:"from_primary"`
	Events      []api.Event `json:"events"`
}

const maxEventLimit = 10000

// NewEventsCommand shows the cluster's history.
func NewEventsCommand(g *globals) *cobra.Command {
	var (
		limit   int
		cluster string
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the cluster's history: assembly, switchovers, failovers, nodes lost and back",
		Long: `Show the latest events of the cluster, oldest first: when it was assembled,
nodes going offline and coming back, switchovers, failovers, rejoins,
re-seeds, the WAL cap reached.

The events live in the cluster record, which the primary writes and the
secondary receives by replication. They are read from the primary; when it
does not answer, from the secondary's copy, which may lack the latest (the
console says so). With --endpoint, from that node.

Exit status: 0 events shown; 2 bad flags; 3 no node could be reached;
4 certificate or token refused.`,
		Example: `  tandem events
  tandem events --limit 200 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			if limit < 1 || limit > maxEventLimit {
				return exitf(ExitUsage, "--limit %d: give 1 to %d", limit, maxEventLimit)
			}
			tr, err := g.trust(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			path := fmt.Sprintf("/v1/events?limit=%d", limit)

			var candidates []*probe
			if g.endpoint != "" {
				addr, err := NormalizeEndpoint(g.endpoint)
				if err != nil {
					return exitf(ExitUsage, "%v", err)
				}
				token, err := g.endpointToken(addr)
				if err != nil {
					return err
				}
				c, err := Dial(ctx, addr, token, tr)
				if err != nil {
					return err
				}
				p := &probe{node: CachedNode{Address: addr}, c: c}
				if err := c.Get(ctx, "/v1/node", &p.view.Node); err != nil {
					return err
				}
				candidates = []*probe{p}
			} else {
				name, cc, err := pickCluster(tr.cache, cluster)
				if err != nil {
					return err
				}
				toks, err := LoadTokens()
				if err != nil {
					return err
				}
				probes := probeNodes(ctx, tr, toks, cc.Nodes)
				if err := remember(tr.cache, name, probes, time.Now().UTC()); err != nil {
					return err
				}
				candidates = eventSources(probes)
				if len(candidates) == 0 {
					return noneAnswered(name, probes)
				}
			}

			var out EventsOutput
			var lastErr error
			for _, p := range candidates {
				var list api.EventList
				if err := p.c.Get(ctx, path, &list); err != nil {
					lastErr = err
					fmt.Fprintf(cmd.ErrOrStderr(), "%s could not give its events: %v\n", nameOr(p), err)
					continue
				}
				out = EventsOutput{Source: nameOr(p), Address: p.c.Addr(), FromPrimary: p.view.Node.Role == rolePrimary, Events: sortedEvents(list.Events)}
				lastErr = nil
				if !out.FromPrimary && g.endpoint == "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "The primary did not answer: these are %s's replicated copy of the events, which may lack the latest.\n", out.Source)
				} else if p.view.Node.Role == roleSecondary {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s is the secondary: these are its replicated copy of the events.\n", out.Source)
				}
				break
			}
			if lastErr != nil {
				return lastErr
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printEvents(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&limit, "limit", 50, "show at most this many of the latest events")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

// eventSources orders the nodes that answered: the primary first, then the
// others, highest term first.
func eventSources(ps []*probe) []*probe {
	var out []*probe
	if p := primaryOf(ps); p != nil {
		out = append(out, p)
	}
	var rest []*probe
	for _, p := range ps {
		if p.reachable() && (len(out) == 0 || p != out[0]) {
			rest = append(rest, p)
		}
	}
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].view.Node.Term > rest[j].view.Node.Term })
	return append(out, rest...)
}

// noneAnswered is the error when no node of a cluster answered: refused
// when every node refused the console, unreachable otherwise.
func noneAnswered(name string, ps []*probe) error {
	refused := 0
	var errs []error
	for _, p := range ps {
		errs = append(errs, fmt.Errorf("%s: %w", nameOr(p), p.err))
		if ExitCode(p.err) == ExitRefused {
			refused++
		}
	}
	code := ExitUnreachable
	if refused == len(ps) {
		code = ExitRefused
	}
	return &ExitError{Code: code, Err: fmt.Errorf("no node of cluster %s answered:\n  %w", name, errors.Join(errs...))}
}

func nameOr(p *probe) string {
	switch {
	case p.view.Node.Name != "":
		return p.view.Node.Name
	case p.node.Name != "":
		return p.node.Name
	}
	return p.node.Address
}

func printEvents(w io.Writer, out EventsOutput) {
	if len(out.Events) == 0 {
		fmt.Fprintf(w, "No events recorded (asked %s).\n", out.Source)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tNODE\tTERM\tMESSAGE")
	for _, e := range out.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Local().Format("2006-01-02 15:04:05"), e.Kind, dash(e.Node), termOf(e.Term), e.Message)
	}
	tw.Flush()
}

// sortedEvents returns events oldest first, whatever order the node gave.
func sortedEvents(es []api.Event) []api.Event {
	out := append([]api.Event{}, es...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
