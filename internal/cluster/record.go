// Package cluster is the HA brain of a node: the cluster record, and each
// operation's whole sequence in one place (assemble and join, disassemble
// and leave), plus the monitor that watches replication on both sides.
package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tandem-ha/tandem/internal/api"
)

// The cluster's own record lives in schema "tandem" of the postgres
// database. It is replicated like any other change, so the secondary always
// has it; only the primary writes it.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS tandem;
CREATE TABLE IF NOT EXISTS tandem.cluster (
	id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
	name        text NOT NULL,
	state       text NOT NULL,            -- assembled | standalone
	term        bigint NOT NULL,
	primary_node text NOT NULL,
	cluster_ip  text NOT NULL,
	dns_name    text NOT NULL,
	replication text NOT NULL,            -- async | sync | strict
	synchronized boolean NOT NULL DEFAULT false,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tandem.members (
	name        text PRIMARY KEY,
	ip          text NOT NULL,
	api_port    int NOT NULL,
	pg_port     int NOT NULL,
	fingerprint text NOT NULL,
	slot        text NOT NULL
);
CREATE TABLE IF NOT EXISTS tandem.events (
	id      bigserial PRIMARY KEY,
	at      timestamptz NOT NULL DEFAULT clock_timestamp(),
	kind    text NOT NULL,
	node    text NOT NULL DEFAULT '',
	term    bigint NOT NULL DEFAULT 0,
	message text NOT NULL
);
CREATE TABLE IF NOT EXISTS tandem.files (  -- sync.files (filesync.go)
	path       text PRIMARY KEY,
	content    bytea NOT NULL,
	mode       int NOT NULL,
	uid        int NOT NULL,
	gid        int NOT NULL,
	sha256     text NOT NULL,
	node       text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tandem.operations (
	id          bigserial PRIMARY KEY,
	kind        text NOT NULL,
	step        text NOT NULL,
	term        bigint NOT NULL,
	started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at timestamptz,
	outcome     text
);
`

// Record, Member and Event are the API's wire types: the record is shown
// to consoles as it is stored.
type (
	Record = api.Record
	Member = api.Member
	Event  = api.Event
)

// ErrNoRecord means this database holds no cluster record.
var ErrNoRecord = errors.New("no cluster record")

// execer is what the record functions need from a connection.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// EnsureSchema creates the record's tables on the primary.
func EnsureSchema(ctx context.Context, db execer) error {
	if _, err := db.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("while creating the tandem schema: %w", err)
	}
	return nil
}

// WriteRecord replaces the cluster row and its members in one transaction.
func WriteRecord(ctx context.Context, conn *pgx.Conn, r Record) error {
	return recordTx(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO tandem.cluster (id, name, state, term, primary_node, cluster_ip, dns_name, replication, synchronized, updated_at)
VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, now())
ON CONFLICT (id) DO UPDATE SET name = $1, state = $2, term = $3, primary_node = $4, cluster_ip = $5,
	dns_name = $6, replication = $7, synchronized = $8, updated_at = now()`,
			r.Name, r.State, r.Term, r.Primary, r.ClusterIP, r.DNSName, r.Replication, r.Synchronized)
		if err != nil {
			return fmt.Errorf("while writing the cluster record: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tandem.members`); err != nil {
			return err
		}
		for _, m := range r.Members {
			if _, err := tx.Exec(ctx, `INSERT INTO tandem.members (name, ip, api_port, pg_port, fingerprint, slot) VALUES ($1, $2, $3, $4, $5, $6)`,
				m.Name, m.IP, m.APIPort, m.PGPort, m.Fingerprint, m.Slot); err != nil {
				return fmt.Errorf("while writing member %s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// ReadRecord reads the record; ErrNoRecord when there is none. It works on
// the secondary too (a read-only query).
func ReadRecord(ctx context.Context, db execer) (Record, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('tandem.cluster') IS NOT NULL`).Scan(&exists); err != nil {
		return Record{}, fmt.Errorf("while looking for the cluster record: %w", err)
	}
	if !exists {
		return Record{}, ErrNoRecord
	}
	var r Record
	err := db.QueryRow(ctx, `SELECT name, state, term, primary_node, cluster_ip, dns_name, replication, synchronized, updated_at FROM tandem.cluster WHERE id = 1`).
		Scan(&r.Name, &r.State, &r.Term, &r.Primary, &r.ClusterIP, &r.DNSName, &r.Replication, &r.Synchronized, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, ErrNoRecord
	}
	r.Endpoint = EndpointVIP
	if err == nil && r.ClusterIP == "" {
		r.Endpoint = EndpointDNS
	}
	if err != nil {
		return Record{}, fmt.Errorf("while reading the cluster record: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT name, ip, api_port, pg_port, fingerprint, slot FROM tandem.members ORDER BY name`)
	if err != nil {
		return Record{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.Name, &m.IP, &m.APIPort, &m.PGPort, &m.Fingerprint, &m.Slot); err != nil {
			return Record{}, err
		}
		r.Members = append(r.Members, m)
	}
	return r, rows.Err()
}

// AddEvent appends to the cluster's history (primary only).
func AddEvent(ctx context.Context, conn *pgx.Conn, kind, node string, term int64, message string) error {
	return recordTx(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tandem.events (kind, node, term, message) VALUES ($1, $2, $3, $4)`, kind, node, term, message); err != nil {
			return fmt.Errorf("while recording event %s: %w", kind, err)
		}
		return nil
	})
}

// SetSynchronized updates the record's synchronized flag.
func SetSynchronized(ctx context.Context, conn *pgx.Conn, v bool) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := localCommit(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE tandem.cluster SET synchronized = $1, updated_at = now() WHERE id = 1 AND synchronized IS DISTINCT FROM $1`, v)
		return err
	})
}

// recordTx runs fn in a transaction that commits locally (a record write
// must not wait for a standby that may be gone) with the schema in place.
func recordTx(ctx context.Context, conn *pgx.Conn, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := localCommit(ctx, tx); err != nil {
			return err
		}
		if err := EnsureSchema(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// localCommit makes tandem's own bookkeeping commit without waiting for a
// synchronous standby: recording "the secondary is gone" must not hang
// because the secondary is gone. The data it protects is the
// application's, not this history.
func localCommit(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SET LOCAL synchronous_commit TO local`)
	return err
}

// Events returns the newest events, oldest first.
func Events(ctx context.Context, db execer, limit int) ([]Event, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('tandem.events') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	rows, err := db.Query(ctx, `SELECT id, at, kind, node, term, message FROM (SELECT * FROM tandem.events ORDER BY id DESC LIMIT $1) e ORDER BY id`, limit)
	if err != nil {
		return nil, fmt.Errorf("while reading events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.ID, &e.At, &e.Kind, &e.Node, &e.Term, &e.Message); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
