package api

// Header names of the HTTP API.
const (
	// HeaderIndex is the index of the state an answer reflects: the index
	// to block on next (?index=N).
	HeaderIndex = "X-Coordd-Index"
	// HeaderConsistency says how a read was served: "linearizable" or
	// "stale".
	HeaderConsistency = "X-Coordd-Consistency"
	// HeaderKnownLeader, on a stale read, says whether the serving node
	// knew a leader.
	HeaderKnownLeader = "X-Coordd-Known-Leader"
	// HeaderLastContact, on a stale read, is the milliseconds since the
	// serving node last heard from the leader ("never" if it has not).
	HeaderLastContact = "X-Coordd-Last-Contact"
	// HeaderAppliedIndex, on a stale read, is the serving node's applied
	// index.
	HeaderAppliedIndex = "X-Coordd-Applied-Index"
	// HeaderForwardedBy names the node that forwarded a request to the
	// leader (on the forwarded request, and on the answer relayed back).
	HeaderForwardedBy = "X-Coordd-Forwarded-By"
	// HeaderPeerAuth authenticates HeaderForwardedBy on a forwarded
	// request: "v1 UNIXSECONDS HMAC" (HMAC-SHA256 with the cluster's peer
	// secret, hex). Without it, or under TLS without a node certificate,
	// HeaderForwardedBy is ignored.
	HeaderPeerAuth = "X-Coordd-Peer-Auth"
	// HeaderServedBy names the node that served a request.
	HeaderServedBy = "X-Coordd-Served-By"
	// HeaderClusterID is the id of the cluster of the node that answered.
	HeaderClusterID = "X-Coordd-Cluster-Id"
	// HeaderIdempotencyKey identifies a mutating request across retries.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderReplayed is "true" on an answer replayed from the record of an
	// earlier request with the same Idempotency-Key.
	HeaderReplayed = "Idempotent-Replayed"
	// HeaderRetryAfter is sent with 503 and 429 answers.
	HeaderRetryAfter = "Retry-After"
)
