package console

import (
	"io"
	"io/fs"
)

// On Windows the files' access is the user profile's ACL (%LocalAppData%
// is private to its user); Unix modes say nothing there.

func tightenCacheDir(io.Writer) {}

func checkPrivateDir(string) error { return nil }

func checkTokenFile(string, fs.FileInfo) error { return nil }
