// Package netproxy injects network faults between coordd nodes without root.
//
// Every node reaches every peer's Raft port through a small TCP proxy, one per
// ordered pair of nodes: a [Link]. Node A dials peer B at link(A→B)'s address
// (hashicorp/raft's ServerAddressProvider, coordd's Config.PeerRaftAddrs),
// and the link forwards each accepted connection to B's real Raft address.
// Clients reach every node directly; only Raft traffic crosses the proxies.
// Everything listens and dials on loopback only.
//
// # Directions
//
// A Raft connection carries bytes both ways: A dials B, sends requests and
// reads B's responses on the same connection. A link therefore carries two
// byte streams: forward (dialer→target) and backward (target→dialer). Faults
// are not set per link but per [Direction] of a node pair: the direction
// A→B is every byte that A sends to B, whoever dialed, that is the forward
// stream of link(A→B) and the backward stream of link(B→A). [Net] creates
// one Direction for each ordered pair and shares it between the two links.
//
// # Fault semantics
//
// The faults of a direction ([Faults]) are applied per chunk, a chunk being
// what one read from the sending socket returned; a chunk's fate is decided
// when it is due for delivery.
//
//   - Cut: every byte sent in this direction is silently discarded (a black
//     hole, like a firewall that drops packets: nothing is reset, senders
//     see timeouts). Established connections are not closed when a cut
//     begins; they stall in that direction. A new connection whose forward
//     direction is cut is accepted but never dialed onwards: what the dialer
//     sends is discarded and it never hears anything. A connection whose
//     backward direction alone is cut is dialed as usual: requests arrive,
//     responses are discarded. So with A→B cut and B→A open, B's requests
//     reach A (A hears B) but A's answers and A's own requests never reach
//     B. Since TCP cannot resume a stream with a hole in it, a connection
//     that has discarded anything (or was black-holed from the start) is
//     reset when the cut ends ([Direction.Set] without Cut, [Net.Heal]) and
//     never delivers again; Raft then reconnects through the proxy, and
//     new connections flow normally. A chunk whose write had already begun
//     when the cut was set may still arrive. For a cut that fails fast
//     instead of silently, follow it with [Net.ResetBetween].
//   - Delay, Jitter: each chunk is delivered no earlier than Delay plus a
//     uniform random [0, Jitter) after it was read from the sender. Order
//     within a connection is always preserved (a chunk never overtakes an
//     earlier one, so the effective delay can exceed Delay+Jitter). Delivery
//     is pipelined: a delayed link adds latency, not a throughput limit,
//     up to queueLen chunks in flight per stream. Connection set-up is not
//     delayed.
//   - Loss: TCP cannot lose a byte without corrupting the framing above it,
//     so loss is modelled as connection resets: with probability Loss, a
//     chunk due for delivery is discarded and its whole connection reset
//     (both sides get an RST, in both directions). Raft reconnects.
//   - Heal: all faults cleared (zero [Faults]). See Cut for what happens to
//     connections that lost bytes.
//
// A half-close (FIN) is forwarded after the data before it; while its
// direction is cut it is lost like data. A connection closes when both of
// its streams have ended, or at once on any error or reset.
package netproxy
