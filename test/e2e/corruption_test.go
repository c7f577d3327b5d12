package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// These tests damage the data dir of a stopped node the way a disk or an
// operator might, and check that the restarted node refuses to start with
// a message that names the problem (and serves nothing), that the rest of
// the cluster is unaffected, and that the documented remedy works.

// logSize is the current length of p's log file: what a restart appends
// comes after it.
func logSize(t *testing.T, p *proc) int64 {
	t.Helper()
	fi, err := os.Stat(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// expectRefusal restarts p and expects it to exit non-zero within 20 s
// without ever starting, its log naming every want. It returns that log.
func expectRefusal(t *testing.T, p *proc, wants ...string) string {
	t.Helper()
	from := logSize(t, p)
	p.start(t)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
		t.Fatalf("%s kept running on a corrupt data dir", p.id)
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b[from:])
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("%s exited 0 on a corrupt data dir:\n%s", p.id, out)
	}
	if strings.Contains(out, "coordd node started") {
		t.Fatalf("%s started (and served) on a corrupt data dir:\n%s", p.id, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s's log does not say %q:\n%s", p.id, w, out)
		}
	}
	return out
}

// lastLine is the last non-empty line of s: what the operator sees last.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func followerOf(t *testing.T, procs []*proc) *proc {
	t.Helper()
	l := leaderOf(t, procs)
	for _, p := range procs {
		if p != l {
			return p
		}
	}
	t.Fatal("no follower")
	return nil
}

func putKey(t *testing.T, p *proc, key, value string) {
	t.Helper()
	putAt(t, httpc, p.url(), p, key, value)
}

// putAt writes key=value through p at base (its http or https URL),
// retrying for up to 15 s while the cluster has no leader.
func putAt(t *testing.T, hc *http.Client, base string, p *proc, key, value string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/"+key, strings.NewReader(value))
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s via %s: %v", key, p.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitValue waits until p serves key=value from its own state.
func waitValue(t *testing.T, p *proc, key, value string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := httpc.Get(p.url() + "/v1/kv/" + key + "?stale&raw")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == value {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not serve %s=%s: %v", p.id, key, value, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// editLogEntry finds the log entry of p's raft.db whose stored bytes hold
// marker and replaces its value with edit's result, in a bbolt transaction
// (the file stays a sound bbolt file; only the entry is damaged).
func editLogEntry(t *testing.T, p *proc, marker string, edit func(v []byte) []byte) uint64 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(p.dataDir, "raft.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var index uint64
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("logs"))
		if b == nil {
			return fmt.Errorf("no logs bucket")
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Contains(v, []byte(marker)) {
				index = binary.BigEndian.Uint64(k)
				return b.Put(bytes.Clone(k), edit(bytes.Clone(v)))
			}
		}
		return fmt.Errorf("no log entry holds %q", marker)
	})
	if err != nil {
		t.Fatal(err)
	}
	return index
}

func Test_E2E_Corruption_LogEntry_NodeRefusesToStart_RejoinsWhenWiped(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second)
	leader := leaderOf(t, procs)
	const marker = "value-to-be-damaged-0123456789"
	putKey(t, leader, "e2e/damaged", marker)
	f := followerOf(t, procs)
	waitValue(t, f, "e2e/damaged", marker)
	f.term(t, 10*time.Second)

	// One byte flipped inside the value: the entry still parses, as
	// msgpack and as a command; only its checksum tells.
	index := editLogEntry(t, f, marker, func(v []byte) []byte {
		i := bytes.Index(v, []byte(marker))
		v[i+5] ^= 0x01
		return v
	})
	out := expectRefusal(t, f, "data dir corrupt", fmt.Sprintf("log entry %d (term", index), "checksum mismatch",
		filepath.Join(f.dataDir, "raft.db"), "rejoin")
	t.Logf("%s stopped with: %s", f.id, lastLine(out))

	// An entry raft-boltdb cannot decode at all.
	editLogEntry(t, f, marker[8:], func(v []byte) []byte { return append([]byte{0xC1}, v...) })
	out = expectRefusal(t, f, "data dir corrupt", fmt.Sprintf("log entry %d (of", index), "cannot be read")
	t.Logf("%s stopped with: %s", f.id, lastLine(out))

	// The others were not disturbed.
	putKey(t, leader, "e2e/after", "ok")

	// The remedy the message gives: move the data dir aside, join empty.
	if err := os.Rename(f.dataDir, f.dataDir+".corrupt"); err != nil {
		t.Fatal(err)
	}
	for i, a := range f.args {
		if a == "-bootstrap" {
			f.args = append(append(append([]string(nil), f.args[:i]...), f.args[i+2:]...), "-join", leader.httpAddr)
			break
		}
	}
	f.start(t)
	waitReady(t, f, 20*time.Second)
	waitValue(t, f, "e2e/damaged", marker)
	waitValue(t, f, "e2e/after", "ok")
}

// snapshotDirs lists p's complete snapshot directories, oldest first.
func snapshotDirs(t *testing.T, p *proc) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.dataDir, "snapshots"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			dirs = append(dirs, e.Name())
		}
	}
	key := func(name string) [3]uint64 {
		var k [3]uint64
		for i, s := range strings.SplitN(name, "-", 3) {
			k[i], _ = strconv.ParseUint(s, 10, 64)
		}
		return k
	}
	sort.Slice(dirs, func(i, j int) bool {
		a, b := key(dirs[i]), key(dirs[j])
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
	return dirs
}

func Test_E2E_Corruption_NewestSnapshot_NodeRefusesToStart_NeverFallsBackPastAGap(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second,
		"-snapshot-threshold", "64", "-trailing-logs", "16", "-snapshot-threshold-check", "200ms", "-snapshot-retain", "2")
	leader := leaderOf(t, procs)
	f := followerOf(t, procs)
	// Enough entries for two snapshots on the follower, the log compacted
	// behind the newer one.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; len(snapshotDirs(t, f)) < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%s took no two snapshots: %v", f.id, snapshotDirs(t, f))
		}
		for j := range 40 {
			putKey(t, leader, fmt.Sprintf("e2e/s%03d-%02d", i, j), "v")
		}
		time.Sleep(300 * time.Millisecond)
	}
	putKey(t, leader, "e2e/last", "here")
	waitValue(t, f, "e2e/last", "here")
	f.term(t, 10*time.Second)
	dirs := snapshotDirs(t, f)
	newest := filepath.Join(f.dataDir, "snapshots", dirs[len(dirs)-1])
	state := filepath.Join(newest, "state.bin")
	orig, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	// A flipped byte in the newest snapshot's state: Raft's CRC-64 in
	// meta.json catches it. Raft would try the older snapshot next.
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0x20
	if err := os.WriteFile(state, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	out := expectRefusal(t, f, "data dir corrupt", "newest snapshot", "cannot be restored", "CRC mismatch", dirs[len(dirs)-1])
	t.Logf("%s stopped with: %s", f.id, lastLine(out))
	if err := os.WriteFile(state, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// A garbled meta.json: Raft's store would skip the snapshot silently.
	meta := filepath.Join(newest, "meta.json")
	origMeta, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, origMeta[:len(origMeta)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	out = expectRefusal(t, f, "data dir corrupt", "meta.json is unreadable", dirs[len(dirs)-1])
	t.Logf("%s stopped with: %s", f.id, lastLine(out))
	if err := os.WriteFile(meta, origMeta, 0o600); err != nil {
		t.Fatal(err)
	}
	// Renamed, so that Raft's store reads it under a name that is not its
	// id (and would fail to open it): refused the same way.
	if err := os.Rename(newest, newest+".renamed"); err != nil {
		t.Fatal(err)
	}
	out = expectRefusal(t, f, "data dir corrupt", "meta.json is unreadable", "not its directory")
	t.Logf("%s stopped with: %s", f.id, lastLine(out))
	if err := os.Rename(newest+".renamed", newest); err != nil {
		t.Fatal(err)
	}

	// The newest snapshot gone altogether: the older one does not reach
	// the log's first entry, and the node says so instead of starting
	// with a gap (Raft itself panicked "log not found").
	aside := filepath.Join(f.dataDir, "newest-snapshot-aside")
	if err := os.Rename(newest, aside); err != nil {
		t.Fatal(err)
	}
	out = expectRefusal(t, f, "data dir corrupt", "are missing", dirs[len(dirs)-2])
	t.Logf("%s stopped with: %s", f.id, lastLine(out))
	if err := os.Rename(aside, newest); err != nil {
		t.Fatal(err)
	}

	// Repaired, it starts and serves the same state.
	f.start(t)
	waitReady(t, f, 20*time.Second)
	waitValue(t, f, "e2e/last", "here")
}

func Test_E2E_Corruption_BboltFile_NodeRefusesToStart(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second)
	leader := leaderOf(t, procs)
	for i := range 200 {
		putKey(t, leader, fmt.Sprintf("e2e/b%03d", i), strings.Repeat("x", 100))
	}
	f := followerOf(t, procs)
	waitValue(t, f, "e2e/b199", strings.Repeat("x", 100))
	f.term(t, 10*time.Second)
	path := filepath.Join(f.dataDir, "raft.db")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The page the logs bucket's tree starts at (a reachable page: a
	// freed one may hold anything).
	var root uint64
	var page int
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	page = db.Info().PageSize
	_ = db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte("logs")).Root())
		return nil
	})
	db.Close()
	if root < 2 {
		t.Fatalf("the logs bucket is inline (root %d): write more", root)
	}
	damage := []struct {
		name  string
		f     func(b []byte) []byte
		wants []string
	}{
		{"garbage over both meta pages", func(b []byte) []byte {
			for i := range 2 * page {
				b[i] = byte(i*13 + 1)
			}
			return b
		}, []string{"bbolt cannot open", "invalid database"}},
		{"the logs bucket's root page with bad flags", func(b []byte) []byte {
			at := int(root) * page
			b[at+8], b[at+9] = 0x7F, 0x7F // the page header's flags
			return b
		}, []string{"corrupted page", "unexpected type/flags"}},
		{"truncated to 3 pages", func(b []byte) []byte { return b[:3*page] }, []string{"raft.db"}},
	}
	for _, d := range damage {
		if err := os.WriteFile(path, d.f(bytes.Clone(orig)), 0o600); err != nil {
			t.Fatal(err)
		}
		out := expectRefusal(t, f, append([]string{"data dir corrupt", path}, d.wants...)...)
		t.Logf("%s: %s stopped with: %s", d.name, f.id, lastLine(out))
	}
	putKey(t, leader, "e2e/after", "ok")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f.start(t)
	waitReady(t, f, 20*time.Second)
	waitValue(t, f, "e2e/after", "ok")
}

func clusterIDOf(t *testing.T, p *proc) string {
	t.Helper()
	resp, err := httpc.Get(p.url() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		ClusterID string `json:"cluster_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.ClusterID
}

func postMember(t *testing.T, p *proc, body string) (int, string) {
	t.Helper()
	resp, err := httpc.Post(p.url()+"/v1/cluster/members", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitLog(t *testing.T, p *proc, needle string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(p.logPath)
		if bytes.Contains(b, []byte(needle)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's log never said %q", p.id, needle)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func Test_E2E_ClusterID_NodeOfAnotherClusterCannotJoinOrTalk(t *testing.T) {
	a := startClusterWith(t, 3, "info", 20*time.Second)
	b := startClusterWith(t, 1, "info", 20*time.Second)
	aID, bID := clusterIDOf(t, a[0]), clusterIDOf(t, b[0])
	if aID == "" || bID == "" || aID == bID {
		t.Fatalf("cluster ids %q and %q", aID, bID)
	}
	for _, p := range a[1:] {
		if id := clusterIDOf(t, p); id != aID {
			t.Fatalf("%s of cluster A has id %q, n1 %q", p.id, id, aID)
		}
	}
	bLeader := leaderOf(t, b)

	// B's operator adds a node of A through the members API: B asks it
	// for its cluster id first and refuses.
	code, body := postMember(t, bLeader, fmt.Sprintf(`{"id":"intruder","raft_addr":%q,"http_addr":%q}`, a[1].raftAddr, a[1].httpAddr))
	if code != http.StatusConflict || !strings.Contains(body, "cluster_mismatch") || !strings.Contains(body, aID) {
		t.Fatalf("adding a node of A to B: %d %s", code, body)
	}
	// A joiner that says it belongs to A is refused without a look.
	code, body = postMember(t, bLeader, fmt.Sprintf(`{"id":"x","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2","cluster_id":%q}`, aID))
	if code != http.StatusConflict || !strings.Contains(body, "cluster_mismatch") {
		t.Fatalf("a joiner of cluster A: %d %s", code, body)
	}
	t.Logf("refused: %s", strings.TrimSpace(body))

	// One whose HTTP API does not answer is added (as a non-voter here),
	// but its Raft port belongs to A's n3, which refuses B's connections.
	code, body = postMember(t, bLeader, fmt.Sprintf(`{"id":"a3","raft_addr":%q,"http_addr":%q,"voter":false}`, a[2].raftAddr, freePort(t)))
	if code != http.StatusOK {
		t.Fatalf("adding an unverifiable node: %d %s", code, body)
	}
	waitLog(t, a[2], "refused a raft connection from another cluster")
	req, _ := http.NewRequest(http.MethodDelete, bLeader.url()+"/v1/cluster/members/a3", nil)
	if resp, err := httpc.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	// A raw Raft connection that presents B's id to A's n1 is closed.
	conn, err := net.DialTimeout("tcp", a[0].raftAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	preamble := append([]byte("coordd-cluster\x01"), byte(len(bID)))
	if _, err := conn.Write(append(append(preamble, bID...), 0x00, 0x80)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Fatalf("A answered %d bytes to a connection of cluster B", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("A kept a connection of cluster B open")
	}
	conn.Close()
	waitLog(t, a[0], "refused a raft connection from another cluster")

	// Both clusters are unaffected.
	putKey(t, leaderOf(t, a), "e2e/a", "1")
	putKey(t, bLeader, "e2e/b", "1")
	for _, p := range a {
		waitValue(t, p, "e2e/a", "1")
		if id := clusterIDOf(t, p); id != aID {
			t.Fatalf("%s's cluster id changed to %q", p.id, id)
		}
	}

	// A new, empty node joins B and adopts B's id.
	dir := t.TempDir()
	j := &proc{id: "j1", raftAddr: freePort(t), httpAddr: freePort(t), dataDir: filepath.Join(dir, "j1"), logPath: filepath.Join(dir, "j1.log")}
	j.args = []string{"-id", j.id, "-data-dir", j.dataDir, "-raft-addr", j.raftAddr, "-http-addr", j.httpAddr,
		"-join", bLeader.httpAddr, "-log-level", "info"}
	j.start(t)
	t.Cleanup(j.kill)
	waitReady(t, j, 20*time.Second)
	waitValue(t, j, "e2e/b", "1")
	if id := clusterIDOf(t, j); id != bID {
		t.Fatalf("the joiner has cluster id %q, want B's %q", id, bID)
	}
	if got, err := os.ReadFile(filepath.Join(j.dataDir, "cluster-id")); err != nil || strings.TrimSpace(string(got)) != bID {
		t.Fatalf("the joiner's cluster-id file: %q, %v", got, err)
	}
}
