// Package docker tests the container image and the compose cluster
// (deploy/) under real faults: a killed leader container, a node cut off
// with `docker network disconnect`, a lease holder's container paused past
// its TTL, and a rolling restart of every node. `make test-docker` runs it;
// it is skipped unless COORDD_DOCKER_TEST=1 and `docker info` answers, so
// `make test` does not need Docker.
//
// The test talks to the nodes only over loopback (ports published on
// 127.0.0.1) and, for the node that is cut off, through `docker exec` of
// coordctl against the container's own loopback.
package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/test/docker/fencedkv"
)

var nodes = []string{"n1", "n2", "n3"}

// cluster is one compose project of deploy/compose.yaml.
type cluster struct {
	t        *testing.T
	root     string   // repository root
	compose  []string // the compose command
	project  string
	env      []string
	ports    map[string]int // node -> published HTTP port on 127.0.0.1
	network  string
	c        *client.Client
	suffix   string
	extraCtr []string
}

func TestDockerCluster(t *testing.T) {
	if os.Getenv("COORDD_DOCKER_TEST") != "1" {
		t.Skip("container tests run with COORDD_DOCKER_TEST=1 (make test-docker)")
	}
	if testing.Short() {
		t.Skip("container tests are skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput()
	cancel()
	if err != nil {
		t.Skipf("docker info failed, no Docker to test with: %v: %s", err, lastLine(out))
	}
	cl := start(t)
	t.Run("LeaderKill", cl.testLeaderKill)
	t.Run("Partition", cl.testPartition)
	t.Run("RollingRestart", cl.testRollingRestart)
	t.Run("PausedHolder", cl.testPausedHolder)
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	return s[strings.LastIndex(s, "\n")+1:]
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// composeCommand is `docker compose` when the plugin is there, else
// docker-compose.
func composeCommand(t *testing.T) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither `docker compose` nor docker-compose is installed")
	return nil
}

// run runs a command bounded by timeout and returns its combined output.
func (cl *cluster) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = cl.root
	cmd.Env = append(os.Environ(), cl.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func (cl *cluster) must(timeout time.Duration, name string, args ...string) string {
	cl.t.Helper()
	out, err := cl.run(timeout, name, args...)
	if err != nil {
		cl.t.Fatal(err)
	}
	return out
}

func (cl *cluster) composeArgs(args ...string) (string, []string) {
	all := append(append([]string{}, cl.compose[1:]...), "-p", cl.project, "-f", "deploy/compose.yaml")
	return cl.compose[0], append(all, args...)
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// start builds the image, brings the cluster up under a unique project
// name and registers the removal of everything it made.
func start(t *testing.T) *cluster {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	cl := &cluster{t: t, root: root, compose: composeCommand(t), project: "coordd-test-" + suffix, suffix: suffix, ports: map[string]int{}}
	image := "coordd:test-" + suffix
	cl.env = append(cl.env, "COORDD_IMAGE="+image)
	for i, p := range freePorts(t, len(nodes)) {
		cl.ports[nodes[i]] = p
		cl.env = append(cl.env, fmt.Sprintf("HOST_PORT_N%d=%d", i+1, p))
	}

	t.Cleanup(func() {
		if t.Failed() {
			name, args := cl.composeArgs("logs", "--no-color", "--tail", "30")
			out, _ := cl.run(time.Minute, name, args...)
			t.Logf("container logs:\n%s", out)
		}
		for _, c := range cl.extraCtr {
			if _, err := cl.run(time.Minute, "docker", "rm", "-f", "-v", c); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
		name, args := cl.composeArgs("down", "-v", "--remove-orphans", "-t", "5")
		if _, err := cl.run(3*time.Minute, name, args...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, img := range []string{image, "coordd-holder:test-" + suffix} {
			cl.run(time.Minute, "docker", "rmi", img) // the holder image may not exist
		}
	})

	t0 := time.Now()
	cl.must(5*time.Minute, "make", "image", "IMAGE="+image)
	t.Logf("image %s built in %v", image, time.Since(t0).Round(time.Millisecond))
	name, args := cl.composeArgs("up", "-d")
	cl.must(3*time.Minute, name, args...)
	for _, n := range nodes {
		cl.waitReady(n, 90*time.Second)
	}
	t.Logf("cluster %s ready %v after up", cl.project, time.Since(t0).Round(time.Millisecond))
	cl.network = strings.TrimSpace(cl.must(time.Minute, "docker", "inspect", "-f",
		"{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", cl.container("n1")))

	var eps []string
	for _, n := range nodes {
		eps = append(eps, cl.addr(n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Endpoints: eps, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl.c = c
	return cl
}

func (cl *cluster) addr(node string) string { return fmt.Sprintf("127.0.0.1:%d", cl.ports[node]) }

// container is the id of node's container.
func (cl *cluster) container(node string) string {
	cl.t.Helper()
	name, args := cl.composeArgs("ps", "-q", node)
	id := strings.TrimSpace(cl.must(time.Minute, name, args...))
	if id == "" {
		cl.t.Fatalf("no container for %s", node)
	}
	return id
}

var httpc = &http.Client{Timeout: time.Second}

// ready reports whether node answers /readyz with 200.
func (cl *cluster) ready(node string) bool {
	resp, err := httpc.Get("http://" + cl.addr(node) + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (cl *cluster) waitReady(node string, timeout time.Duration) time.Duration {
	cl.t.Helper()
	t0 := time.Now()
	for !cl.ready(node) {
		if time.Since(t0) > timeout {
			cl.t.Fatalf("%s not ready after %v", node, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(t0)
}

// status asks one node (over its published port) for its view.
func (cl *cluster) status(node string) (*client.Status, error) {
	resp, err := httpc.Get("http://" + cl.addr(node) + "/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st client.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// leader is the node every node that answers names as leader.
func (cl *cluster) leader(timeout time.Duration) string {
	cl.t.Helper()
	t0 := time.Now()
	for time.Since(t0) < timeout {
		if st, err := cl.status(nodes[0]); err == nil && st.Leader != nil && st.Ready {
			return st.Leader.ID
		}
		for _, n := range nodes[1:] {
			if st, err := cl.status(n); err == nil && st.Leader != nil && st.Ready {
				return st.Leader.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl.t.Fatalf("no leader after %v", timeout)
	return ""
}

func (cl *cluster) put(key, value string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cl.c.Put(ctx, key, []byte(value))
	return err
}

func (cl *cluster) get(key string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := cl.c.Get(ctx, key)
	if err != nil {
		return "", err
	}
	return string(kv.Value), nil
}

// exec runs coordctl inside node's container against its own loopback.
func (cl *cluster) coordctl(ctr string, args ...string) (string, error) {
	all := append([]string{"exec", ctr, "/coordctl", "-endpoints", "127.0.0.1:7101", "-timeout", "1s"}, args...)
	return cl.run(10*time.Second, "docker", all...)
}

// testLeaderKill: a write acknowledged before the leader's container is
// SIGKILLed survives, a new leader is elected and the cluster keeps serving.
func (cl *cluster) testLeaderKill(t *testing.T) {
	cl.t = t
	if err := cl.put("failover/before", "acked", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	old := cl.leader(10 * time.Second)
	ctr := cl.container(old)
	t0 := time.Now()
	cl.must(time.Minute, "docker", "kill", ctr)
	var elected time.Duration
	for {
		if time.Since(t0) > 30*time.Second {
			t.Fatalf("no write acknowledged within 30s of killing leader %s", old)
		}
		if elected == 0 {
			for _, n := range nodes {
				if st, err := cl.status(n); n != old && err == nil && st.Leader != nil && st.Leader.ID != old {
					elected = time.Since(t0)
				}
			}
		}
		if cl.put("failover/after", "acked", time.Second) == nil {
			break
		}
	}
	resumed := time.Since(t0)
	if elected == 0 {
		elected = resumed
	}
	t.Logf("leader %s killed: a new leader was named after %d ms, writes resumed after %d ms", old, elected.Milliseconds(), resumed.Milliseconds())
	if v, err := cl.get("failover/before", 10*time.Second); err != nil || v != "acked" {
		t.Fatalf("write acknowledged before the kill: got %q, %v", v, err)
	}
	if now := cl.leader(10 * time.Second); now == old {
		t.Fatalf("leader is still the killed node %s", old)
	}
	// Bring the node back; it rejoins as a follower and catches up.
	cl.must(time.Minute, "docker", "start", ctr)
	t1 := time.Now()
	cl.waitReady(old, 60*time.Second)
	for {
		out, err := cl.coordctl(ctr, "kv", "get", "failover/after", "-stale", "-raw")
		if err == nil && strings.TrimSpace(out) == "acked" {
			break
		}
		if time.Since(t1) > 30*time.Second {
			t.Fatalf("restarted %s did not catch up: %q %v", old, out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("killed node %s restarted: ready and caught up %d ms after docker start", old, time.Since(t1).Milliseconds())
}

// testPartition: a follower cut off from the network refuses linearizable
// reads and writes while the majority goes on, and catches up once it is
// reconnected.
func (cl *cluster) testPartition(t *testing.T) {
	cl.t = t
	leader := cl.leader(10 * time.Second)
	var cut string
	for _, n := range nodes {
		if n != leader {
			cut = n
			break
		}
	}
	ctr := cl.container(cut)
	if err := cl.put("part/k", "v0", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := cl.coordctl(ctr, "kv", "get", "part/k", "-raw"); err != nil || strings.TrimSpace(out) != "v0" {
		t.Fatalf("%s before the cut: %q %v", cut, out, err)
	}

	t0 := time.Now()
	cl.must(time.Minute, "docker", "network", "disconnect", cl.network, ctr)
	reconnected := false
	defer func() {
		if !reconnected {
			cl.run(time.Minute, "docker", "network", "connect", "--alias", cut, cl.network, ctr)
		}
	}()
	// Time until the cut-off node refuses a linearizable read: probes of
	// 500 ms each (the client retries "no leader" until its deadline).
	var refused time.Duration
	var probes []string
	for refused == 0 {
		start := time.Since(t0)
		out, err := cl.coordctl(ctr, "-timeout", "500ms", "kv", "get", "part/k", "-raw")
		end := time.Since(t0)
		probes = append(probes, fmt.Sprintf("[%d-%d ms] %s", start.Milliseconds(), end.Milliseconds(), firstLine([]byte(out))))
		if err != nil {
			refused = end
		} else if end > 30*time.Second {
			t.Fatalf("%s still serves linearizable reads 30s after it was cut off", cut)
		}
	}
	t.Logf("probes of the cut-off node: %q", probes)
	// Time until it no longer believes in a leader.
	var noLeader time.Duration
	for noLeader == 0 {
		out, err := cl.coordctl(ctr, "-timeout", "500ms", "-o", "json", "status")
		if err == nil && !strings.Contains(out, `"leader":{`) {
			noLeader = time.Since(t0)
		} else if time.Since(t0) > 30*time.Second {
			t.Fatalf("%s still names a leader 30s after it was cut off: %s", cut, out)
		}
	}
	// The majority goes on.
	tw := time.Now()
	if err := cl.put("part/k", "v1", 15*time.Second); err != nil {
		t.Fatalf("majority write while %s is cut off: %v", cut, err)
	}
	majority := time.Since(tw)
	if v, err := cl.get("part/k", 10*time.Second); err != nil || v != "v1" {
		t.Fatalf("majority read: %q %v", v, err)
	}
	// The cut-off node refuses linearizable reads and writes: never v0 (stale) as if current.
	for i := range 5 {
		if out, err := cl.coordctl(ctr, "kv", "get", "part/k", "-raw"); err == nil {
			t.Fatalf("cut-off %s served a linearizable read (probe %d): %q", cut, i, out)
		}
		if out, err := cl.coordctl(ctr, "kv", "put", "part/cut", fmt.Sprint(i)); err == nil {
			t.Fatalf("cut-off %s acknowledged a write (probe %d): %q", cut, i, out)
		}
	}
	stale, err := cl.coordctl(ctr, "kv", "get", "part/k", "-stale", "-raw")
	t.Logf("cut-off %s: its explicitly stale read says %q (%v)", cut, strings.TrimSpace(stale), err)

	t1 := time.Now()
	cl.must(time.Minute, "docker", "network", "connect", "--alias", cut, cl.network, ctr)
	reconnected = true
	var caughtUp, serving time.Duration
	for caughtUp == 0 || serving == 0 {
		if time.Since(t1) > 60*time.Second {
			t.Fatalf("%s did not catch up within 60s of reconnecting (stale read %v, linearizable %v)", cut, caughtUp, serving)
		}
		if caughtUp == 0 {
			if out, err := cl.coordctl(ctr, "kv", "get", "part/k", "-stale", "-raw"); err == nil && strings.TrimSpace(out) == "v1" {
				caughtUp = time.Since(t1)
			}
		}
		if serving == 0 {
			if out, err := cl.coordctl(ctr, "kv", "get", "part/k", "-raw"); err == nil {
				if strings.TrimSpace(out) != "v1" {
					t.Fatalf("%s after reconnecting: linearizable read %q, want v1", cut, out)
				}
				serving = time.Since(t1)
			}
		}
	}
	t.Logf("partition of %s (docker exec probes of up to 500 ms each): the first linearizable read refused was answered %d ms after the cut, its status named no leader by %d ms; the majority's write took %d ms",
		cut, refused.Milliseconds(), noLeader.Milliseconds(), majority.Milliseconds())
	t.Logf("after reconnect: stale read showed the latest write after %d ms, linearizable reads served again after %d ms",
		caughtUp.Milliseconds(), serving.Milliseconds())
}

// testRollingRestart restarts every node in turn (waiting for /readyz in
// between) under a continuous writer, then reads every acknowledged write
// back.
func (cl *cluster) testRollingRestart(t *testing.T) {
	cl.t = t
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []int
	var failures int
	var maxWriteGap time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cl.c.Put(wctx, fmt.Sprintf("roll/%06d", i), []byte(strconv.Itoa(i)))
			cancel()
			mu.Lock()
			if err == nil {
				acked = append(acked, i)
				maxWriteGap = max(maxWriteGap, time.Since(last))
				last = time.Now()
			} else if ctx.Err() == nil {
				failures++
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// Leader watchers, one per node so that a node that hangs while it
	// stops delays no other: the longest time no node said it leads.
	var leaderSeen []time.Time
	pollc := &http.Client{Timeout: 300 * time.Millisecond}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := pollc.Get("http://" + cl.addr(n) + "/v1/status")
				if err == nil {
					var st client.Status
					if json.NewDecoder(resp.Body).Decode(&st) == nil && st.State == "Leader" && st.ID == n {
						mu.Lock()
						leaderSeen = append(leaderSeen, time.Now())
						mu.Unlock()
					}
					resp.Body.Close()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	time.Sleep(time.Second)
	for _, n := range nodes {
		ctr := cl.container(n)
		role := "a follower"
		if cl.leader(10*time.Second) == n {
			role = "the leader"
		}
		t0 := time.Now()
		cl.must(2*time.Minute, "docker", "restart", "-t", "15", ctr)
		took := time.Since(t0)
		ready := cl.waitReady(n, 90*time.Second)
		t.Logf("restarted %s (%s): docker restart took %d ms, ready %d ms later", n, role, took.Milliseconds(), ready.Milliseconds())
		if took > 5*time.Second {
			out, _ := cl.run(30*time.Second, "docker", "logs", "--since", t0.Add(-time.Second).Format(time.RFC3339Nano), ctr)
			t.Logf("%s's log since its restart began:\n%s", n, firstLines(out, 40))
		}
		time.Sleep(time.Second)
	}
	stop()
	wg.Wait()
	slices.SortFunc(leaderSeen, time.Time.Compare)
	var maxNoLeader time.Duration
	for i := 1; i < len(leaderSeen); i++ {
		maxNoLeader = max(maxNoLeader, leaderSeen[i].Sub(leaderSeen[i-1]))
	}

	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kvs, _, err := cl.c.List(rctx, "roll/")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, kv := range kvs {
		have[kv.Key] = string(kv.Value)
	}
	lost := 0
	for _, i := range acked {
		if v, ok := have[fmt.Sprintf("roll/%06d", i)]; !ok || v != strconv.Itoa(i) {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write roll/%06d = %d is missing or wrong (%q)", i, i, v)
			}
		}
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	t.Logf("rolling restart: %d writes acknowledged, %d failed, %d lost; longest gap between acknowledged writes %d ms, longest time no node said it led (polled every 20 ms) %d ms",
		len(acked), failures, lost, maxWriteGap.Milliseconds(), maxNoLeader.Milliseconds())
}

// testPausedHolder: a lock holder running in its own container is paused
// past its lease TTL; a standby takes the lock with a higher token; when
// the holder is unpaused its fenced write is refused.
func (cl *cluster) testPausedHolder(t *testing.T) {
	cl.t = t
	dir := t.TempDir()
	cl.env = append(cl.env, "CGO_ENABLED=0") // a static binary for the scratch image
	cl.must(3*time.Minute, "go", "build", "-trimpath", "-o", filepath.Join(dir, "holder"), "./test/docker/holder")
	dockerfile := "FROM scratch\nCOPY holder /holder\nUSER 65532:65532\nENTRYPOINT [\"/holder\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "coordd-holder:test-" + cl.suffix
	cl.must(3*time.Minute, "docker", "build", "-q", "-t", image, dir)
	name := cl.project + "-holder"
	cl.extraCtr = append(cl.extraCtr, name)
	const ttl = 2 * time.Second
	cl.must(time.Minute, "docker", "run", "-d", "--name", name, "--network", cl.network, image,
		"-endpoints", "n1:7101,n2:7101,n3:7101", "-name", "docker-fence", "-key", "fence/resource", "-ttl", ttl.String())

	logs := func() []string {
		out, _ := cl.run(30*time.Second, "docker", "logs", name)
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	var holderToken uint64
	t0 := time.Now()
	for {
		lines := logs()
		ok := false
		for _, l := range lines {
			if v, found := strings.CutPrefix(l, "token "); found {
				holderToken, _ = strconv.ParseUint(v, 10, 64)
			}
			ok = ok || strings.HasSuffix(l, " ok")
		}
		if holderToken != 0 && ok {
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("holder did not take the lock and write within 60s: %q", lines)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cl.must(time.Minute, "docker", "pause", name)
	paused := time.Now()
	before := len(logs())

	// The standby, from the host, waits for the lock.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := client.NewSession(ctx, cl.c, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	m := client.NewMutex(s, "docker-fence", client.LockOptions{})
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("standby lock: %v", err)
	}
	acquired := time.Since(paused)
	standby := m.Token()
	if standby <= holderToken {
		t.Fatalf("standby token %d not above the holder's %d", standby, holderToken)
	}
	if _, err := fencedkv.Write(ctx, cl.c, "fence/resource", standby, "standby"); err != nil {
		t.Fatalf("standby's fenced write: %v", err)
	}
	if chk, err := cl.c.CheckToken(ctx, "docker-fence", holderToken); err != nil || chk.Current {
		t.Fatalf("GET /v1/fencing for the holder's token %d: %+v %v", holderToken, chk, err)
	}

	cl.must(time.Minute, "docker", "unpause", name)
	unpaused := time.Now()
	var after []string
	for {
		after = logs()[before:]
		stale := false
		for _, l := range after {
			stale = stale || strings.Contains(l, " stale: ")
		}
		if stale {
			break
		}
		if time.Since(unpaused) > 30*time.Second {
			t.Fatalf("holder wrote nothing refused within 30s of unpausing: %q", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// No write of the holder may succeed once one was refused, and the
	// resource keeps the standby's write.
	refusedSeen := false
	for _, l := range after {
		refusedSeen = refusedSeen || strings.Contains(l, " stale: ")
		if refusedSeen && strings.HasSuffix(l, " ok") {
			t.Fatalf("holder's write succeeded after one was refused: %q", after)
		}
	}
	kv, err := cl.c.Get(ctx, "fence/resource")
	if err != nil {
		t.Fatal(err)
	}
	if tok, data := fencedkv.Parse(kv.Value); tok != standby || data != "standby" {
		t.Fatalf("fenced resource = %q, want the standby's write with token %d", kv.Value, standby)
	}
	t.Logf("paused holder (token %d, ttl %v): standby got the lock %d ms after the pause with token %d; after unpausing, the holder's writes were refused: %q",
		holderToken, ttl, acquired.Milliseconds(), standby, firstN(after, 4))
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }
