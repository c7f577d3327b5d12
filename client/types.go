package client

import (
	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/api"
)

// The client speaks the wire contract of package api: these names are the
// api types themselves, never copies.
type (
	// Member is one server of the cluster.
	Member = api.Member
	// Status is a node's view of the cluster.
	Status = api.Status
	// KV is one key; Value holds its bytes.
	KV = api.KV
	// WriteResult is the outcome of a put.
	WriteResult = api.KVWriteResult
	// DeleteResult is the outcome of a delete.
	DeleteResult = api.KVDeleteResult
	// Attachment is something a lease holds.
	Attachment = api.Attachment
	// Lease is a lease as the leader sees it.
	Lease = api.Lease
	// Candidate is a holder or waiting candidate of an election or lock.
	Candidate = api.Candidate
	// ElectionState is an election or lock. Leader is nil when nobody
	// holds it.
	ElectionState = api.Election
	// CampaignResult says whether a lease leads (with its fencing token)
	// or where it waits.
	CampaignResult = api.CampaignResponse
	// FencingCheck answers whether a token is a current holder's.
	FencingCheck = api.FencingCheck
	// RestoreResult is what the cluster reports after a restore.
	RestoreResult = api.RestoreResult
	// KeepAliveManyResult is what KeepAliveMany renewed: the leases
	// renewed, in the order asked, and the ids that are unknown, revoked
	// or already past their deadline (their holders lost them).
	KeepAliveManyResult = api.KeepaliveManyResponse
	// ACLRule grants Access (read, write or deny) on Resource (kv, lease,
	// election, lock, operator or acl) for every name that starts with
	// Prefix. The rule with the longest matching prefix decides.
	ACLRule = acl.Rule
	// ACLToken is an access token. SecretID is set only in the answer that
	// created it; it is what clients send (Config.Token).
	ACLToken = api.ACLToken
	// ACLTokenSpec describes a token to create. SecretID, when set, is the
	// secret to use (16 to 256 printable characters); by default the
	// server makes a random one.
	ACLTokenSpec = api.ACLTokenRequest
)
