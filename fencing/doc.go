// Package fencing protects a resource (a storage server, a queue, a file) from
// writes by a lock or election holder that has already been deposed.
//
// coordd gives every lock or election holder a fencing token: the Raft log
// index of the entry that made it the holder. Tokens are strictly increasing
// per name, across leader changes, restarts, snapshot installs and restores. A
// holder sends its token with every write; the resource remembers the highest
// token it has accepted per name and refuses any lower one. A holder that
// paused (GC, swap, a network partition) and wakes up after its lease expired
// still believes it holds the lock, but its token is lower than the new
// holder's, so its late writes are refused instead of overwriting the new
// holder's work. This is Chubby's sequencer and Kleppmann's fencing token.
//
// A Guard implements the resource side. It keeps the highest accepted tokens in
// a Store: NewMemoryStore for a resource whose own state does not survive a
// restart either, OpenBoltStore for one whose state does (the highest tokens
// must be at least as durable as the data they protect, or a restart would let
// a deposed holder in again). Guard.Middleware wraps an http.Handler so that
// writes must carry the HeaderName and HeaderToken headers.
//
// A Guard only orders the checks. A Check that passed does not make the write
// that follows it atomic: if the resource has concurrent writers it must hold
// a lock of its own across Check and write, or make the write itself
// conditional on the token (see Guard.Middleware and examples/fenced-store).
package fencing
