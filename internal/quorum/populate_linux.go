package quorum

import (
	_ "unsafe" // for go:linkname

	bolt "go.etcd.io/bbolt"
)

// etcd opens its data file with MAP_POPULATE on Linux, so every start
// faults the whole file into memory. The file grows in bbolt's 16 MiB
// steps (its allocation size, once the map is larger than that, as the
// 64 MiB quota makes it), while tandem's quorum holds a few keys in a few
// KiB: after a restart the populated file added 16 MiB to each member's
// resident memory for pages that hold nothing (measured on the witness:
// 40 MiB before a restart, 56 MiB after). Without the flag the pages a
// member reads are faulted in when it reads them, which for data this
// small costs nothing measurable.
//
// etcd offers no setting for it, hence the link to its options; the
// package's test fails if etcd renames or retypes them.
//
//go:linkname etcdBoltOptions go.etcd.io/etcd/server/v3/storage/backend.boltOpenOptions
var etcdBoltOptions *bolt.Options

func init() {
	if etcdBoltOptions != nil {
		etcdBoltOptions.MmapFlags = 0
	}
}
