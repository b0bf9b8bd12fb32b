//go:build !linux

package lab

import (
	"context"
	"io"
	"log/slog"
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
