package service

import (
	"net"
	"os"
)

// Notify tells systemd about the service's state when it runs as a
// Type=notify unit ($NOTIFY_SOCKET set); elsewhere it does nothing. READY=1
// is sent once the API listens: from then on the node answers, even while
// it waits for its peer before starting PostgreSQL (which may take as long
// as the peer is away, far past any start timeout).
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
