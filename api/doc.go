// Package api is coordd's wire contract: the JSON request and response
// bodies of the HTTP API, its error codes and its header names. The server
// (httpapi, server) and the Go client both import it, as etcd's api module
// serves its server and its client, so that the two can never drift apart:
// there is one definition of every message.
//
// It holds no logic beyond the JSON form of a message (KV's value encoding)
// and a few accessors; validation of a request lives with the server.
package api
