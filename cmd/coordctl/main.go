// Command coordctl is the command-line client of coordd, in the style of
// etcdctl and `consul lock`. It is built only on package client.
//
//	coordctl [-endpoints H:P,...] [-o table|json] [-timeout 30s] COMMAND [ARGS]
//
// Global flags may come before or after the command and its arguments (up
// to a "--"). Run `coordctl help` for the commands and the exit codes
// scripts rely on; `coordctl version` prints the build's version.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/buildinfo"
)

// Exit codes. Scripts rely on them: keep them stable.
const (
	exitOK          = 0   // the command did what was asked
	exitFailed      = 1   // the server said no, or the cluster is unavailable
	exitUsage       = 2   // bad usage or input
	exitLost        = 3   // a lease, leadership or lock was lost
	exitTimeout     = 4   // timed out waiting
	exitInterrupted = 130 // SIGINT or SIGTERM
)

// defaultEndpoints are the HTTP addresses of `make run`'s cluster.
const defaultEndpoints = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

const usageText = `usage: coordctl [-endpoints H:P,...] [-o table|json] [-timeout 30s] COMMAND [ARGS]

Global flags (before or after the command and its arguments, up to a "--"):
  -endpoints H:P,...  HTTP addresses of coordd nodes (default: $COORDCTL_ENDPOINTS,
                      else ` + defaultEndpoints + `); https://H:P for TLS
  -ca FILE            TLS: CA certificate(s) the nodes' certificates must chain to
                      (default: $COORDD_CA); endpoints without a scheme become https
  -cert F -key F      TLS: client certificate and key, for clusters that require one
                      (default: $COORDD_CERT, $COORDD_KEY)
  -o table|json       output: aligned columns (default) or JSON (one document;
                      one per line for commands that stream events)
  -timeout 30s        deadline of a one-shot command (not of watch, keepalive,
                      elect, observe and lock, which run until interrupted)
  -token SECRET       access token for a cluster with ACLs (default: $COORDD_TOKEN)
  -token-file F       file holding the access token (default: $COORDD_TOKEN_FILE)
  -version            print the version and VCS revision of this build (or: coordctl version)

Commands (flags may come before or after the arguments):
  status                                 each endpoint's view of the cluster (exit 1 if
                                         any endpoint does not answer)
  members list                           the Raft configuration
  members add ID RAFTADDR HTTPADDR [-non-voter]
  members remove ID
  members transfer [ID]                  hand leadership over (default: the most up-to-date voter)
  kv get KEY [-stale] [-raw]
  kv put KEY VALUE [-cas N | -create] [-lease ID] [-fence NAME:TOKEN]   VALUE "-" reads stdin
  kv del KEY [-cas N | -prefix] [-fence NAME:TOKEN]
                                         -fence: only while TOKEN is a current holder's token of
                                         lock or election NAME (else 'stale token', exit 1)
  txn [-idempotency-key K] < TXN.json    compares, then ops, else ops, in one step (JSON as
                                         POST /v1/txn takes it); exit 1 when the else branch ran
  kv ls [PREFIX]
  kv watch KEY                           print the key's state now and after every change
  lease grant TTL                        e.g. 10s, 500ms (a bare number is seconds)
  lease keepalive ID [-once]             keep alive until interrupted, printing the time left
  lease revoke ID                        releases everything attached to the lease
  lease ls
  lease get ID
  elect NAME [VALUE] [-ttl 10s]          campaign with a new session; lead until interrupted
                                         (then resign) or until leadership is lost
  observe NAME                           print the leader now and after every change
  lock NAME [-ttl 10s] [-wait D] [-limit N] [-lock-delay D] [-kill-timeout 5s] -- CMD [ARGS...]
                                         run CMD only while holding the lock; its environment
                                         has COORDD_LOCK_NAME, COORDD_FENCING_TOKEN, COORDD_LEASE
  check NAME TOKEN                       is TOKEN a current holder's fencing token?
  check consistency [-no-point]          every member's state digest at one common index (exit 1
                                         if one differs or does not answer)
  alarm list                             the cluster's alarms (members whose state differs)
  alarm disarm MEMBER | -all             clear an alarm (after replacing that member's data)
  shadow status [-all]                   shadow members: digest agreement, apply errors, lag
  snapshot save FILE                     a consistent backup of the whole state, from the leader
  snapshot restore [-bump N] FILE        replace the whole state with a backup (verified first);
                                         holders get fresh tokens above every earlier one
  acl bootstrap [-secret-file F]         make the first management token (once per cluster)
  acl token create [-description D] [-management] [-rule RESOURCE:ACCESS[:PREFIX]]...
  acl token ls | get ACCESSOR | delete ACCESSOR
  acl whoami                             the token this client sends
  version                                the module version and VCS revision of this build
  help                                   this text

Exit codes:
  0    ok (check: the token is current)
  1    the command failed: the server said no (not found, CAS conflict, stale
       token, not current...) or the cluster is unavailable
  2    bad usage or input
  3    lost: the lease, leadership or lock was lost
  4    timed out waiting (lock -wait, -timeout)
  130  interrupted (SIGINT or SIGTERM)
  lock passes on the exit code of its command when the command exits by
  itself (128+N when a signal N killed it): a command that may itself exit
  3 or 4 makes those codes ambiguous.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a command runs with. ctx ends when the user interrupts.
type env struct {
	ctx       context.Context
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	endpoints []string
	tls       *tls.Config // for https endpoints; nil without -ca, -cert, -key
	json      bool
	timeout   time.Duration
	cmd       string // the command path for messages, e.g. "kv get"
	token     string // access token sent as a bearer token
}

// command runs with the arguments after its name and returns the exit code.
type command func(e *env, args []string) int

// group dispatches to subcommands ("kv get", "lease grant").
func group(name string, subs map[string]command, synopsis string) command {
	return func(e *env, args []string) int {
		if len(args) == 0 {
			return e.usagef("%s needs a subcommand\nusage:\n%s", name, synopsis)
		}
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprintf(e.stdout, "usage:\n%s", synopsis)
			return exitOK
		}
		sub, ok := subs[args[0]]
		if !ok {
			return e.usagef("unknown subcommand %q of %s\nusage:\n%s", args[0], name, synopsis)
		}
		e.cmd = name + " " + args[0]
		return sub(e, args[1:])
	}
}

func commands() map[string]command {
	return map[string]command{
		"status": cmdStatus,
		"members": group("members", map[string]command{
			"list": cmdMembersList, "ls": cmdMembersList,
			"add": cmdMembersAdd, "remove": cmdMembersRemove, "rm": cmdMembersRemove,
			"transfer": cmdMembersTransfer,
		}, membersSynopsis),
		"kv": group("kv", map[string]command{
			"get": cmdKVGet, "put": cmdKVPut, "del": cmdKVDel, "ls": cmdKVLs, "watch": cmdKVWatch,
		}, kvSynopsis),
		"lease": group("lease", map[string]command{
			"grant": cmdLeaseGrant, "keepalive": cmdLeaseKeepalive, "revoke": cmdLeaseRevoke,
			"ls": cmdLeaseLs, "get": cmdLeaseGet,
		}, leaseSynopsis),
		"txn":     cmdTxn,
		"elect":   cmdElect,
		"observe": cmdObserve,
		"lock":    cmdLock,
		"check":   cmdCheckOrConsistency,
		"alarm": group("alarm", map[string]command{
			"list": cmdAlarmList, "ls": cmdAlarmList, "disarm": cmdAlarmDisarm,
		}, alarmSynopsis),
		"shadow": group("shadow", map[string]command{"status": cmdShadowStatus}, shadowSynopsis),
		"snapshot": group("snapshot", map[string]command{
			"save": cmdSnapshotSave, "restore": cmdSnapshotRestore,
		}, snapshotSynopsis),
		"acl": group("acl", map[string]command{
			"bootstrap": cmdACLBootstrap, "whoami": cmdACLWhoami,
			"token": group("acl token", map[string]command{
				"create": cmdACLTokenCreate, "ls": cmdACLTokenList, "list": cmdACLTokenList,
				"get": cmdACLTokenGet, "delete": cmdACLTokenDelete, "rm": cmdACLTokenDelete,
			}, aclSynopsis),
		}, aclSynopsis),
	}
}

// run is the whole program: it parses the global flags, dispatches to the
// command and returns the exit code. ctx ends on interrupt.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("coordctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line below
	fs.Usage = func() {}
	def := os.Getenv("COORDCTL_ENDPOINTS")
	if def == "" {
		def = defaultEndpoints
	}
	endpoints := fs.String("endpoints", def, "comma-separated HTTP addresses of coordd nodes")
	output := fs.String("o", "table", "output format: table or json")
	caFile := fs.String("ca", os.Getenv("COORDD_CA"), "TLS: CA certificate file for https endpoints")
	certFile := fs.String("cert", os.Getenv("COORDD_CERT"), "TLS: client certificate file")
	keyFile := fs.String("key", os.Getenv("COORDD_KEY"), "TLS: client key file")
	fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "deadline of a one-shot command")
	fs.StringVar(&e.token, "token", os.Getenv("COORDD_TOKEN"), "access token (secret) for clusters with ACLs")
	tokenFile := fs.String("token-file", os.Getenv("COORDD_TOKEN_FILE"), "file holding the access token")
	version := fs.Bool("version", false, "print the version of this build")
	globals, rest := splitGlobals(fs, args)
	if err := fs.Parse(globals); err != nil {
		return e.flagError(err)
	}
	if len(rest) > 0 {
		switch rest[0] {
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usageText)
			return exitOK
		case "version":
			*version = true
		}
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read().String("coordctl"))
		return exitOK
	}
	switch *output {
	case "table":
	case "json":
		e.json = true
	default:
		return e.usagef("-o %q: the output format must be table or json", *output)
	}
	if e.timeout <= 0 {
		return e.usagef("-timeout %s: must be positive", e.timeout)
	}
	if *tokenFile != "" && e.token == "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return e.usagef("-token-file: %v", err)
		}
		e.token = strings.TrimSpace(string(b))
	}
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			e.endpoints = append(e.endpoints, ep)
		}
	}
	if len(e.endpoints) == 0 {
		return e.usagef("-endpoints: no endpoint given")
	}
	if *caFile != "" || *certFile != "" || *keyFile != "" {
		cfg, err := client.TLSConfig(*caFile, *certFile, *keyFile)
		if err != nil {
			return e.usagef("-ca, -cert, -key: %v", err)
		}
		e.tls = cfg
		for i, ep := range e.endpoints {
			if !strings.Contains(ep, "://") {
				e.endpoints[i] = "https://" + ep
			}
		}
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	if strings.HasPrefix(rest[0], "-") && rest[0] != "--" {
		return e.flagError(fmt.Errorf("flag provided but not defined: %s", rest[0]))
	}
	cmd, ok := commands()[rest[0]]
	if !ok {
		return e.usagef("unknown command %q (run coordctl help)", rest[0])
	}
	e.cmd = rest[0]
	return cmd(e, rest[1:])
}

// splitGlobals takes the global flags (those fs defines) out of args,
// wherever they are before a "--": `coordctl kv get k -o json` is `coordctl
// -o json kv get k`. What follows "--" (lock's command) is left alone.
func splitGlobals(fs *flag.FlagSet, args []string) (globals, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return globals, append(rest, args[i:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		f := fs.Lookup(name)
		if !strings.HasPrefix(a, "-") || f == nil {
			rest = append(rest, a)
			continue
		}
		globals = append(globals, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) && i+1 < len(args) {
			i++
			globals = append(globals, args[i])
		}
	}
	return globals, rest
}

// flagError reports a bad flag in one line, says where help is, and
// returns exitUsage.
func (e *env) flagError(err error) int {
	e.usagef("%v", err)
	fmt.Fprintln(e.stderr, "see coordctl help")
	return exitUsage
}

// usagef reports bad usage or input and returns exitUsage.
func (e *env) usagef(format string, a ...any) int {
	prefix := "coordctl: "
	if e.cmd != "" {
		prefix += e.cmd + ": "
	}
	fmt.Fprintf(e.stderr, prefix+format+"\n", a...)
	return exitUsage
}

// warnf prints a message on stderr that does not end the command.
func (e *env) warnf(format string, a ...any) {
	fmt.Fprintf(e.stderr, "coordctl: "+e.cmd+": "+format+"\n", a...)
}

// newClient connects to the endpoints. It fails only on a bad endpoint.
func (e *env) newClient(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, client.Config{Endpoints: e.endpoints, RetryTimeout: e.timeout, Token: e.token, TLS: e.tls})
}

// oneShot is the context of a command bounded by -timeout.
func (e *env) oneShot() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.timeout)
}

// newFlags returns the flag set of a command; synopsis is its usage line.
func (e *env) newFlags(synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("coordctl "+e.cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parseArgs reports problems; -h prints the usage on stdout
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: coordctl %s\n", synopsis)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "flags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// errUsage marks a parse failure whose message was already printed.
var errUsage = errors.New("bad usage")

// parseArgs parses fs's flags wherever they appear among args (flags may
// follow the positional arguments, as in "kv get KEY -stale"), checks the
// number of positional arguments and returns them. "--" ends the flags.
// On -h it returns flag.ErrHelp; on bad usage it prints the problem and
// returns errUsage.
func (e *env) parseArgs(fs *flag.FlagSet, args []string, minArgs, maxArgs int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.stdout)
				fs.Usage()
				return nil, err
			}
			e.flagError(err)
			return nil, errUsage
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		switch {
		case len(pos) < minArgs:
			e.usagef("missing arguments: expected %s", names)
		default:
			e.usagef("unexpected arguments %q: expected %s", pos[maxArgs:], names)
		}
		fs.SetOutput(e.stderr)
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}

// parseDone turns a parseArgs error into an exit code.
func parseDone(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// call runs f with a one-shot context (-timeout) and a client, closed after.
func (e *env) call(f func(ctx context.Context, c *client.Client) int) int {
	ctx, cancel := e.oneShot()
	defer cancel()
	c, err := e.newClient(ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	return f(ctx, c)
}
