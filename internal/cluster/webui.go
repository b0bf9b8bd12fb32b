package cluster

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Commits is the number of transactions committed in all databases of
// this node's PostgreSQL since its statistics were last reset; the web
// console's commit rate is how fast it grows on the primary.
func (n *Node) Commits(ctx context.Context) (int64, error) {
	var c int64
	err := n.withConn(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT coalesce(sum(xact_commit), 0)::bigint FROM pg_stat_database`).Scan(&c)
	})
	return c, err
}
