//go:build !linux

package lab

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Up needs Linux network namespaces.
func Up(ctx context.Context, log *slog.Logger, o UpOptions, out io.Writer) (*Layout, error) {
	return nil, CheckHost()
}

// Down needs Linux network namespaces.
func Down(ctx context.Context, log *slog.Logger, name string) error {
	return CheckHost()
}

// Exec needs Linux network namespaces.
func Exec(ctx context.Context, log *slog.Logger, name, host string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return 0, CheckHost()
}

// DefaultPowerOnTimeout bounds power-on's wait for a node's /health.
const DefaultPowerOnTimeout = 60 * time.Second

// ServeWatchdog needs Linux network namespaces.
func ServeWatchdog(ctx context.Context, log *slog.Logger, name, node string, out io.Writer) error {
	return CheckHost()
}

// PowerOff needs Linux network namespaces.
func PowerOff(ctx context.Context, log *slog.Logger, name, host string, out io.Writer) error {
	return CheckHost()
}

// PowerOn needs Linux network namespaces.
func PowerOn(ctx context.Context, log *slog.Logger, name, host string, wait time.Duration, out io.Writer) error {
	return CheckHost()
}

// Partition needs Linux network namespaces.
func Partition(ctx context.Context, log *slog.Logger, name, h1, h2 string, oneway bool, out io.Writer) error {
	return CheckHost()
}

// Degrade needs Linux network namespaces.
func Degrade(ctx context.Context, log *slog.Logger, name, h1, h2 string, n Netem, out io.Writer) error {
	return CheckHost()
}

// Heal needs Linux network namespaces.
func Heal(ctx context.Context, log *slog.Logger, name, h1, h2 string, out io.Writer) error {
	return CheckHost()
}

// Pause needs Linux network namespaces.
func Pause(ctx context.Context, log *slog.Logger, name, host, process string, out io.Writer) error {
	return CheckHost()
}

// Resume needs Linux network namespaces.
func Resume(ctx context.Context, log *slog.Logger, name, host string, out io.Writer) error {
	return CheckHost()
}

// EditDNS needs Linux network namespaces.
func EditDNS(ctx context.Context, log *slog.Logger, name string, out io.Writer, edit func(l *Layout, z *Zone) (string, error)) error {
	return CheckHost()
}

// DNSZone needs Linux network namespaces.
func DNSZone(name string) (*Zone, error) {
	return nil, CheckHost()
}

// Reload needs Linux network namespaces.
func Reload(ctx context.Context, log *slog.Logger, name, host string, stdout, stderr io.Writer) (int, error) {
	return 0, CheckHost()
}

// Restart needs Linux network namespaces.
func Restart(ctx context.Context, log *slog.Logger, name, host string, wait time.Duration, out io.Writer) error {
	return CheckHost()
}
