package agent

// Exit codes are a public interface (README "Exit codes"); never renumber them.
const (
	ExitOK          = 0 // success
	ExitInternal    = 1 // unexpected error (a bug, or a failure not listed below)
	ExitUsage       = 2 // bad flag, environment variable, config file or discovery string (one naming another cluster's managers' record included); systemd does not restart on it
	ExitDocker      = 3 // Docker engine missing, not answering or too old
	ExitIMDS        = 4 // instance metadata (IMDSv2) unavailable or invalid
	ExitDiscovery   = 5 // discovery, AWS or Consul refused or failed (zone not found, access denied, ...)
	ExitWaitElapsed = 6 // --wait elapsed before the node was in the swarm
	ExitSwarmLocked = 7 // the swarm is autolocked and nobody unlocked it within --wait
	ExitInterrupted = 8 // stopped by a signal before finishing
	ExitLifecycle   = 9 // drain or lifecycle completion failed
)
