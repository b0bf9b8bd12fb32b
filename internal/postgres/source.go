package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Source is another PostgreSQL server to copy from: the primary a clone or
// a rewind reads. User needs the REPLICATION attribute for a clone, and
// for a rewind the right to run pg_rewind's file functions and CHECKPOINT
// (pg_checkpoint). The password never appears in an argument list or a
// log line: tools get it through PGPASSWORD, pgx through its config.
type Source struct {
	Host     string
	Port     int
	User     string
	Password string
}

// String names the source without its password.
func (src Source) String() string {
	return fmt.Sprintf("%s@%s", src.User, netJoin(src.Host, src.Port))
}

// GoString keeps the password out of %#v too.
func (src Source) GoString() string { return "postgres.Source{" + src.String() + "}" }

// LogValue keeps the password out of structured logs.
func (src Source) LogValue() slog.Value {
	return slog.GroupValue(slog.String("host", src.Host), slog.Int("port", src.Port), slog.String("user", src.User))
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "/") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func (src Source) check() error {
	var p []string
	if src.Host == "" || strings.ContainsAny(src.Host, "\x00\n") {
		p = append(p, fmt.Sprintf("host %q must be a host name, an address or a socket directory", src.Host))
	}
	if src.Port < 1 || src.Port > 65535 {
		p = append(p, fmt.Sprintf("port %d must be 1-65535", src.Port))
	}
	if src.User == "" || strings.ContainsAny(src.User, "\x00\n") {
		p = append(p, fmt.Sprintf("user %q must be a role name", src.User))
	}
	if strings.ContainsAny(src.Password, "\x00") {
		p = append(p, "the password must not contain a NUL byte")
	}
	if len(p) > 0 {
		return fmt.Errorf("invalid source server: %s", strings.Join(p, "; "))
	}
	return nil
}

// sourceConnectTimeout bounds each connection attempt to the source.
const sourceConnectTimeout = 5 * time.Second

// conninfo is a libpq connection string for src's database postgres,
// without the password (that goes through PGPASSWORD).
func (src Source) conninfo() string {
	kv := [][2]string{
		{"host", src.Host},
		{"port", strconv.Itoa(src.Port)},
		{"user", src.User},
		{"dbname", "postgres"},
		{"connect_timeout", strconv.Itoa(int(sourceConnectTimeout / time.Second))},
		{"application_name", "tandemd"},
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		parts[i] = p[0] + "=" + quoteConnValue(p[1])
	}
	return strings.Join(parts, " ")
}

// connect opens a connection to src's database postgres.
func (src Source) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(src.conninfo())
	if err != nil {
		return nil, fmt.Errorf("while building the connection settings for %s: %w", src, err)
	}
	cfg.Password = src.Password
	cfg.ConnectTimeout = sourceConnectTimeout
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("while connecting to %s: %w", src, err)
	}
	return c, nil
}

// slotNameRE is what PostgreSQL accepts as a replication slot name.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func checkSlotName(slot string) error {
	if !slotNameRE.MatchString(slot) {
		return fmt.Errorf("replication slot name %q must be 1-63 lower-case letters, digits or underscores", slot)
	}
	return nil
}
