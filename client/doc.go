// Package client is the Go client of coordd.
//
// A Client talks to any number of coordd nodes over HTTP. It sends writes
// and linearizable reads to the node it believes leads (any node would
// forward them, this only saves a hop), follows the leader after a failover,
// and spreads stale reads over every healthy node. Each node has a circuit
// breaker, so a dead node is skipped quickly and tried again gently.
//
// Retries are automatic and only where safe: a call is retried with capped,
// jittered exponential backoff when the answer says nothing was done (no
// leader, not the leader, connection refused). Every mutating call carries
// an Idempotency-Key that the client generates, so a call whose outcome is
// unknown (a timeout after sending, a leader lost mid-commit) is retried too
// and the cluster applies it once.
//
// On top of the raw calls, Session, Election and Mutex give the patterns
// applications need. Say it loudly: holding a lock or a leadership in this
// process does NOT mean the resource you protect agrees. A process can be
// paused at any moment past its lease. Session.Done closes as soon as the
// session can no longer be trusted (its safe deadline, counted from the
// send time of the last successful keepalive minus a drift margin, passed
// without news), and Leadership.Context is cancelled with it, but the only
// protection a resource can rely on is the fencing token: send it with every
// write and let the resource refuse stale ones (package fencing).
package client
