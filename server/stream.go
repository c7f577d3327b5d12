package server

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpStreamLayer is raft's stream layer over a listener we own, so that the
// listener can be bound before the node starts (port 0 in tests) and so that
// TLS can wrap it later.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

func newStreamLayer(ln net.Listener, advertise string) (*tcpStreamLayer, error) {
	addr := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("server: raft advertise address %q: %w", advertise, err)
		}
		if a.IP.IsUnspecified() {
			return nil, fmt.Errorf("%w: raft advertise address %s is not routable: set -raft-advertise", ErrConfig, advertise)
		}
		// Advertise the name as given, not the IP it resolves to now:
		// peers dial it (and resolve it) each time, so a node whose IP
		// changes across a restart (a container) stays reachable under
		// its name.
		addr = advertiseAddr(advertise)
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return nil, fmt.Errorf("%w: raft advertise address %s is not routable: set -raft-advertise", ErrConfig, addr)
	}
	return &tcpStreamLayer{Listener: ln, advertise: addr}, nil
}

// advertiseAddr is a TCP address as the operator wrote it (host name or IP,
// and port).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// Dial implements raft.StreamLayer.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// Addr advertises the configured address rather than the bound one.
func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }

// peerAddrs is a raft.ServerAddressProvider over Config.PeerRaftAddrs.
type peerAddrs struct {
	self  raft.ServerID
	own   raft.ServerAddress
	addrs map[string]string
}

func (p *peerAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if id == p.self {
		return p.own, nil
	}
	if a, ok := p.addrs[string(id)]; ok {
		return raft.ServerAddress(a), nil
	}
	return "", fmt.Errorf("server: no address for peer %q in the peer address map", id)
}
