package cluster

import (
	"fmt"
	"strings"
)

// baseSettings are in tandem.conf from the first start, cluster or not, so
// assembling never needs a restart: wal_log_hints (which pg_rewind needs)
// and wal_level only take effect at server start.
func baseSettings(walKeep string) map[string]string {
	return map[string]string{
		"wal_level":              "replica",
		"wal_log_hints":          "on",
		"hot_standby":            "on",
		"max_wal_senders":        "10",
		"max_replication_slots":  "10",
		"max_slot_wal_keep_size": walKeep,
		"password_encryption":    "scram-sha-256",
		// Standbys report what they still need, so the primary does not
		// vacuum away rows a query on the standby reads.
		"hot_standby_feedback": "on",
		// Fast detection of a vanished peer on the replication connection.
		"wal_sender_timeout":          "5s",
		"wal_receiver_timeout":        "5s",
		"wal_retrieve_retry_interval": "1s",
	}
}

// BaseSettings is what tandemd starts PostgreSQL with before it knows its role.
func BaseSettings(walKeep string) map[string]string { return baseSettings(walKeep) }

// primarySettings adds synchronous replication when wanted.
func primarySettings(walKeep, peer string, syncOn bool) map[string]string {
	m := baseSettings(walKeep)
	if syncOn && peer != "" {
		m["synchronous_standby_names"] = quoteIdent(peer)
	} else {
		m["synchronous_standby_names"] = ""
	}
	return m
}

// standbySettings points the standby at the primary through its slot.
func standbySettings(walKeep string, primary Member, self, password, slot string) map[string]string {
	m := baseSettings(walKeep)
	m["primary_conninfo"] = conninfo(map[string]string{
		"host":                primary.IP,
		"port":                fmt.Sprint(primary.PGPort),
		"user":                ReplicationUser,
		"password":            password,
		"application_name":    self,
		"connect_timeout":     "2",
		"keepalives_idle":     "2",
		"keepalives_interval": "1",
		"keepalives_count":    "3",
	})
	m["primary_slot_name"] = slot
	m["synchronous_standby_names"] = ""
	return m
}

// conninfo renders libpq key=value pairs in a stable order, quoting values.
func conninfo(kv map[string]string) string {
	order := []string{"host", "port", "user", "password", "application_name", "connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count"}
	var parts []string
	for _, k := range order {
		if v, ok := kv[k]; ok {
			v = strings.ReplaceAll(v, `\`, `\\`)
			v = strings.ReplaceAll(v, `'`, `\'`)
			parts = append(parts, k+"='"+v+"'")
		}
	}
	return strings.Join(parts, " ")
}

// quoteIdent double-quotes a standby name for synchronous_standby_names.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// slotName is the physical slot the primary keeps for node.
func slotName(node string) string {
	return "tandem_" + strings.ReplaceAll(node, "-", "_")
}
