package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/snapshot"
)

const membersSynopsis = `  coordctl members list
  coordctl members add ID RAFTADDR HTTPADDR [-non-voter]
  coordctl members remove ID
  coordctl members transfer [ID]
`

const snapshotSynopsis = `  coordctl snapshot save FILE                (a consistent backup of the whole cluster state, from the leader)
  coordctl snapshot restore [-bump N] FILE   (replace the whole cluster state with the backup in FILE)
`

// endpointStatus is one endpoint's answer to status.
type endpointStatus struct {
	Endpoint string         `json:"endpoint"`
	Status   *client.Status `json:"status,omitempty"`
	Error    string         `json:"error,omitempty"`
	hint     string         // what to change, for a TLS mismatch
}

// cmdStatus asks every endpoint for its own view, like etcdctl endpoint
// status: a node that is cut off shows up as such instead of being hidden
// behind one that answers.
func cmdStatus(e *env, args []string) int {
	fs := e.newFlags("status")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	ctx, cancel := e.oneShot()
	defer cancel()
	out := make([]endpointStatus, len(e.endpoints))
	var wg sync.WaitGroup
	for i, ep := range e.endpoints {
		out[i].Endpoint = ep
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One endpoint only, and not the whole -timeout for a dead one.
			per := min(e.timeout, 3*time.Second)
			c, err := client.New(ctx, client.Config{Endpoints: []string{ep}, DialTimeout: per, RetryTimeout: per, TLS: e.tls, Token: e.token})
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			defer c.Close()
			sctx, scancel := context.WithTimeout(ctx, per)
			defer scancel()
			st, err := c.Status(sctx)
			if err != nil {
				_, out[i].Error = classify(err)
				out[i].hint = tlsHint(err)
				return
			}
			out[i].Status = st
		}()
	}
	wg.Wait()
	if e.ctx.Err() != nil {
		return e.fail(e.ctx.Err())
	}
	failed := 0
	for _, s := range out {
		if s.Status == nil {
			failed++
		}
	}
	e.show(out, []string{"ENDPOINT", "ID", "STATE", "LEADER", "TERM", "COMMIT", "APPLIED", "READY", "ERROR"}, func() [][]string {
		var rows [][]string
		for _, s := range out {
			if s.Status == nil {
				rows = append(rows, []string{s.Endpoint, "-", "-", "-", "-", "-", "-", "-", s.Error})
				continue
			}
			st := s.Status
			leader := "none"
			if st.Leader != nil {
				leader = st.Leader.ID
			}
			rows = append(rows, []string{s.Endpoint, st.ID, st.State, leader, u64(st.Term),
				u64(st.CommitIndex), u64(st.AppliedIndex), strconv.FormatBool(st.Ready), ""})
		}
		return rows
	})
	hints := map[string]bool{}
	for _, s := range out {
		if s.hint != "" && !hints[s.hint] {
			hints[s.hint] = true
			fmt.Fprintf(e.stderr, "coordctl: hint: %s\n", s.hint)
		}
	}
	switch {
	case failed == len(out):
		e.warnf("cluster unavailable: no endpoint answered")
		return exitFailed
	case failed > 0:
		e.warnf("%d of %d endpoints did not answer", failed, len(out))
		return exitFailed
	}
	return exitOK
}

var memberHeader = []string{"ID", "RAFT_ADDR", "HTTP_ADDR", "VOTER", "LEADER"}

func (e *env) showMembers(ms []client.Member) {
	if ms == nil {
		ms = []client.Member{}
	}
	e.show(ms, memberHeader, func() [][]string {
		rows := make([][]string, len(ms))
		for i, m := range ms {
			rows[i] = []string{m.ID, m.RaftAddr, m.HTTPAddr, strconv.FormatBool(m.Voter), strconv.FormatBool(m.Leader)}
		}
		return rows
	})
}

func cmdMembersList(e *env, args []string) int {
	fs := e.newFlags("members list")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		ms, err := c.Members(ctx)
		if err != nil {
			return e.fail(err)
		}
		e.showMembers(ms)
		return exitOK
	})
}

func cmdMembersAdd(e *env, args []string) int {
	fs := e.newFlags("members add ID RAFTADDR HTTPADDR [-non-voter]")
	nonVoter := fs.Bool("non-voter", false, "join without a vote")
	pos, err := e.parseArgs(fs, args, 3, 3, "ID RAFTADDR HTTPADDR")
	if err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		ms, err := c.AddMember(ctx, pos[0], pos[1], pos[2], *nonVoter)
		if err != nil {
			return e.fail(err)
		}
		e.showMembers(ms)
		return exitOK
	})
}

func cmdMembersRemove(e *env, args []string) int {
	fs := e.newFlags("members remove ID")
	pos, err := e.parseArgs(fs, args, 1, 1, "ID")
	if err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		if err := c.RemoveMember(ctx, pos[0]); err != nil {
			return e.fail(err)
		}
		e.show(map[string]any{"id": pos[0], "removed": true}, []string{"ID", "REMOVED"}, func() [][]string {
			return [][]string{{pos[0], "true"}}
		})
		return exitOK
	})
}

func cmdMembersTransfer(e *env, args []string) int {
	fs := e.newFlags("members transfer [ID]")
	pos, err := e.parseArgs(fs, args, 0, 1, "[ID]")
	if err != nil {
		return parseDone(err)
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		leader, err := c.TransferLeadership(ctx, id)
		if err != nil {
			return e.fail(err)
		}
		e.show(map[string]string{"leader": leader}, []string{"LEADER"}, func() [][]string {
			return [][]string{{leader}}
		})
		return exitOK
	})
}

// cmdSnapshotSave streams a consistent snapshot from the leader into FILE.
// It writes FILE.tmp, verifies the whole file (framing, record count,
// checksum), fsyncs it and only then renames it to FILE: a file named FILE
// is always a whole, sound backup.
func cmdSnapshotSave(e *env, args []string) int {
	fs := e.newFlags("snapshot save FILE")
	pos, err := e.parseArgs(fs, args, 1, 1, "FILE")
	if err != nil {
		return parseDone(err)
	}
	path := pos[0]
	return e.call(func(ctx context.Context, c *client.Client) int {
		tmp := path + ".tmp"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return e.usagef("cannot write %s: %v", tmp, err)
		}
		defer os.Remove(tmp) // a no-op after the rename
		index, size, err := c.SaveSnapshot(ctx, f)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return e.fail(err)
		}
		if err := verifySnapshot(tmp); err != nil {
			return e.fail(fmt.Errorf("the snapshot received is not sound, nothing saved: %w", err))
		}
		if err := os.Rename(tmp, path); err != nil {
			return e.fail(err)
		}
		e.show(map[string]any{"file": path, "index": index, "bytes": size},
			[]string{"FILE", "INDEX", "BYTES"}, func() [][]string {
				return [][]string{{path, strconv.FormatUint(index, 10), strconv.FormatInt(size, 10)}}
			})
		return exitOK
	})
}

// verifySnapshot reads a whole snapshot file and checks its framing, record
// count and checksum.
func verifySnapshot(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := snapshot.NewReader(f)
	if err != nil {
		return err
	}
	for {
		if _, _, err := r.Next(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// cmdSnapshotRestore verifies FILE locally, then restores it into the
// running cluster (POST /v1/snapshot): the whole state is replaced.
// Restored holders get fresh fencing tokens, above every token issued
// before; a cluster whose history is behind the backup (new or wiped) is
// bumped by 2^30 by default, and -bump N chooses the bump instead.
func cmdSnapshotRestore(e *env, args []string) int {
	fs := e.newFlags("snapshot restore [-bump N] FILE")
	bump := fs.Uint64("bump", 0, "raise the index and every later fencing token by N (default: 2^30 when the cluster's history is behind the backup, else none)")
	pos, err := e.parseArgs(fs, args, 1, 1, "FILE")
	if err != nil {
		return parseDone(err)
	}
	path := pos[0]
	if err := verifySnapshot(path); err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return e.usagef("cannot read %s: %v", path, err)
		}
		return e.usagef("%s is not a sound coordd snapshot, nothing restored: %v", path, err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		f, err := os.Open(path)
		if err != nil {
			return e.usagef("cannot read %s: %v", path, err)
		}
		defer f.Close()
		res, err := c.RestoreSnapshot(ctx, f, client.RestoreOptions{Bump: *bump})
		if err != nil {
			return e.fail(err)
		}
		e.show(res, []string{"BACKUP INDEX", "INDEX", "KEYS", "LEASES", "ELECTIONS", "DIGEST"}, func() [][]string {
			return [][]string{{strconv.FormatUint(res.BackupIndex, 10), strconv.FormatUint(res.Index, 10),
				strconv.Itoa(res.Keys), strconv.Itoa(res.Leases), strconv.Itoa(res.Elections), res.Digest[:min(16, len(res.Digest))]}}
		})
		return exitOK
	})
}
