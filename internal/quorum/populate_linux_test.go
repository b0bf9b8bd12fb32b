package quorum

import "testing"

// The link reaches etcd's own options (NoFreelistSync is etcd's choice, set
// in the same literal), and the member no longer pre-faults its data file.
func TestEtcdDataFileNotPopulated(t *testing.T) {
	if etcdBoltOptions == nil {
		t.Fatal("etcd's bbolt options are not linked")
	}
	if !etcdBoltOptions.NoFreelistSync {
		t.Fatal("the linked options are not etcd's (NoFreelistSync is false)")
	}
	if etcdBoltOptions.MmapFlags != 0 {
		t.Fatalf("etcd's data file is still opened with mmap flags %#x", etcdBoltOptions.MmapFlags)
	}
}
