package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// TLSConfig runs Raft over mutual TLS: Server must require and verify client
// certificates against the cluster CA, Client presents this node's certificate and
// verifies the server against the CA (see internal/pki).
type TLSConfig struct {
	Server *tls.Config
	Client *tls.Config
}

// handshakeTimeout bounds an incoming connection's TLS handshake, so that a peer that
// connects and says nothing does not hold a connection goroutine for ever.
const handshakeTimeout = 10 * time.Second

// tlsLayer is a raft.StreamLayer over TLS. Accepted connections complete the handshake
// (and so the client certificate check) before raft reads a byte of an RPC from them:
// a peer without a certificate signed by the cluster CA cannot append entries, vote or
// install a snapshot. The handshake runs on the connection's first read, in raft's
// per-connection goroutine, not in Accept, which raft calls from a single loop that
// one slow client must not stall.
type tlsLayer struct {
	ln        net.Listener // TCP
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	faults    *Faults // optional, as faultyLayer
}

var _ raft.StreamLayer = (*tlsLayer)(nil)

func newTLSLayer(addr string, advertise net.Addr, cfg *TLSConfig, faults *Faults) (*tlsLayer, error) {
	if cfg.Server == nil || cfg.Client == nil {
		return nil, errors.New("raftstore: TLS needs both a server and a client configuration")
	}
	if cfg.Server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raftstore: the Raft TLS server configuration must require and verify client certificates")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tlsLayer{ln: ln, advertise: advertise, server: cfg.Server, client: cfg.Client, faults: faults}, nil
}

func (l *tlsLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, l.server)}, nil
}

func (l *tlsLayer) Close() error { return l.ln.Close() }

func (l *tlsLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// Dial connects to a peer and completes the handshake within timeout: a server whose
// certificate does not chain to the cluster CA fails here.
func (l *tlsLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.faults.isBlocked(string(addr)) {
		return nil, errPartitioned
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: l.client}
	c, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("raftstore: dial %s over TLS: %w", addr, err)
	}
	if l.faults != nil {
		return &faultyConn{Conn: c, peer: string(addr), faults: l.faults}, nil
	}
	return c, nil
}

// serverConn completes the TLS handshake, within handshakeTimeout, before its first read.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if c.err = c.HandshakeContext(ctx); c.err != nil {
			_ = c.Close()
			c.err = fmt.Errorf("raftstore: TLS handshake with %s: %w", c.RemoteAddr(), c.err)
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}
