package cluster

// Failover modes of a cluster.
const (
	FailoverManual    = "manual"
	FailoverAutomatic = "automatic"
)
