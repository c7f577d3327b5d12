package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

// Docs that cannot rot: the README's tour runs against real nodes, its Go
// example compiles, and every relative link and anchor of the docs
// resolves. The tour's blocks are the ```sh blocks of README.md that follow
// a "<!-- doctest: NAME ... -->" line; a "# → TEXT" comment under a command
// is output that command (or a background job it waits for) must print
// ("..." stands for anything).

const repoRoot = "../.."

// doctests returns README.md's blocks marked for the doctest name.
func doctests(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	marked, in := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- doctest: "):
			marked = strings.Fields(strings.TrimPrefix(line, "<!-- doctest: "))[0] == name
		case strings.HasPrefix(line, "```") && !in:
			in = true
		case line == "```" && in:
			in, marked = false, false
		case in && marked:
			out.WriteString(line + "\n")
		}
	}
	if out.Len() == 0 {
		t.Fatalf("README.md has no block marked <!-- doctest: %s -->", name)
	}
	return out.String()
}

// step is one command of a tour and the output lines it must print.
type step struct {
	cmd  string
	want []string
}

// parseTour splits a shell block into commands (a line ending in \ or |
// continues) and their "# → " lines.
func parseTour(block string) []step {
	var steps []step
	cont := false
	for _, line := range strings.Split(block, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cont:
			steps[len(steps)-1].cmd += "\n" + line
		case strings.HasPrefix(trimmed, "# → "):
			if len(steps) > 0 {
				steps[len(steps)-1].want = append(steps[len(steps)-1].want, strings.TrimPrefix(trimmed, "# → "))
			}
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		default:
			steps = append(steps, step{cmd: line})
		}
		cont = trimmed != "" && !strings.HasPrefix(trimmed, "#") && (strings.HasSuffix(trimmed, "\\") || strings.HasSuffix(trimmed, "|"))
	}
	return steps
}

// wantRE turns a "# → " line into a pattern for a whole output line.
func wantRE(want string) *regexp.Regexp {
	parts := strings.Split(want, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// runTour runs the steps against what start starts (it returns the HTTP
// ports and a stop function) and checks every step's output. A tour that
// fails is run once more against a fresh start: on a loaded machine a
// cluster may elect a new leader in the middle of it, and a step such as a
// blocking watch then answers "no leader" instead (the first attempt's
// problems are logged); a mistake in the README fails both.
func runTour(t *testing.T, steps []step, start func() (ports []string, stop func())) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports, stop := start()
		problems := tourProblems(t, steps, ports)
		stop()
		switch {
		case len(problems) == 0:
			return
		case attempt == 1:
			t.Logf("the tour failed once; running it again from the start:\n%s", strings.Join(problems, "\n"))
		default:
			for _, p := range problems {
				t.Error(p)
			}
			return
		}
	}
}

// tourProblems runs the tour once with bash, in a directory where
// bin/coordctl is this tree's coordctl, with make run's ports (7101...)
// replaced by ports, and returns what went wrong.
func tourProblems(t *testing.T, steps []step, ports []string) (problems []string) {
	t.Helper()
	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: the README's tour uses %s, which is not installed (make test-tools installs it)", tool)
		}
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ctlBin(t), filepath.Join(dir, "bin", "coordctl")); err != nil {
		t.Fatal(err)
	}
	portRE := regexp.MustCompile(`:710([1-9])\b`)
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, st := range steps {
		cmd := portRE.ReplaceAllStringFunc(st.cmd, func(m string) string { return ":" + ports[m[4]-'1'] })
		// A newline first: ?raw prints a value without one.
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n%s\n", i, cmd)
	}
	script.WriteString("printf '\\n@@step end\\n'\n")
	var eps []string
	for _, p := range ports {
		eps = append(eps, "127.0.0.1:"+p)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COORDCTL_ENDPOINTS="+strings.Join(eps, ","))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return []string{fmt.Sprintf("the tour did not finish within 2 min:\n%s", out)}
	}
	if err != nil {
		return []string{fmt.Sprintf("the tour failed (%v):\n---- script ----\n%s---- output ----\n%s", err, script.String(), out)}
	}
	// The output of each step, by the markers.
	outputs := make([][]string, len(steps))
	cur := -1
	for _, line := range strings.Split(string(out), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "@@step %d", &n); err == nil {
			cur = n
			continue
		}
		if strings.HasPrefix(line, "@@step end") {
			cur = -1
			continue
		}
		if cur >= 0 {
			outputs[cur] = append(outputs[cur], line)
		}
	}
	// A "# → " line may be printed by any command since the previous one
	// that expected something (a background job prints when it can).
	from := 0
	for i, st := range steps {
		if len(st.want) == 0 {
			continue
		}
		var window []string
		for _, o := range outputs[from : i+1] {
			window = append(window, o...)
		}
		for _, w := range st.want {
			re, found := wantRE(w), false
			for _, line := range window {
				if re.MatchString(strings.TrimSpace(line)) {
					found = true
					break
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("README tour: %q should print %q; it printed:\n%s", st.cmd, w, strings.Join(window, "\n")))
			}
		}
		from = i + 1
	}
	if len(problems) > 0 {
		problems = append(problems, "---- whole output ----\n"+string(out))
	}
	return problems
}

func Test_Docs_ReadmeTourAgainstADevNode(t *testing.T) {
	runTour(t, parseTour(doctests(t, "tour")), func() ([]string, func()) {
		ports := freePorts(t, 2)
		dev := exec.Command(coorddBin, "-dev", "-http-addr", "127.0.0.1:"+ports[0], "-raft-addr", "127.0.0.1:"+ports[1])
		out, logs := &lockedBuffer{}, &lockedBuffer{}
		dev.Stdout, dev.Stderr = out, logs
		dev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		begin := time.Now()
		if err := dev.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- dev.Wait() }()
		stop := func() {
			_ = dev.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("the dev node exited with %v after SIGTERM", err)
				}
			case <-time.After(15 * time.Second):
				_ = dev.Process.Kill()
				t.Error("the dev node did not stop within 15 s of SIGTERM")
			}
			if t.Failed() {
				t.Logf("---- dev node's log ----\n%s", logs.String())
			}
		}
		for !strings.Contains(out.String(), "Ctrl-C stops it.") {
			select {
			case err := <-exited:
				t.Fatalf("the dev node exited (%v):\n%s%s", err, out.String(), logs.String())
			case <-time.After(10 * time.Millisecond):
			}
			if time.Since(begin) > 30*time.Second {
				stop()
				t.Fatalf("the dev node is not ready after 30 s:\n%s", out.String())
			}
		}
		t.Logf("dev node ready %s after its start (it says: %s)", time.Since(begin).Round(time.Millisecond),
			strings.SplitN(out.String(), "\n", 2)[0])
		return ports[:1], stop
	})
}

func Test_Docs_ReadmeTourAgainstMakeRunsCluster(t *testing.T) {
	runTour(t, parseTour(doctests(t, "tour")+doctests(t, "failover")), func() ([]string, func()) {
		r := startScript(t, newRun(t, 3), []string{"bash", "scripts/run-cluster.sh"}, "COORDD="+coorddBin, "COORDCTL="+ctlBin(t))
		r.waitFor(t, "stops every node.", 60*time.Second)
		return r.http, func() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(15 * time.Second):
			}
		}
	})
}

func Test_Docs_ReadmeGoExampleCompiles(t *testing.T) {
	repo, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	mod := "module doctest\n\ngo 1.26\n\nrequire github.com/coordd/coordd v0.0.0\n\nreplace github.com/coordd/coordd => " + repo + "\n"
	for name, body := range map[string]string{"go.mod": mod, "go.sum": string(sum), "main.go": doctests(t, "go")} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's Go example does not build: %v\n%s", err, out)
	}
}

// Test_Docs_LinksAndAnchorsResolve checks every relative link of README.md,
// docs/ and the examples' READMEs: the file exists inside the repository,
// and an #anchor names a heading of the file it points to.
func Test_Docs_LinksAndAnchorsResolve(t *testing.T) {
	repo, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(repo, "README.md")}
	for _, pattern := range []string{"docs/*.md", "examples/*/README.md"} {
		m, _ := filepath.Glob(filepath.Join(repo, pattern))
		files = append(files, m...)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; !ok {
			anchors[path] = headingAnchors(t, path)
			return anchors[path]
		} else {
			return a
		}
	}
	checked := 0
	for _, file := range files {
		rel, _ := filepath.Rel(repo, file)
		for _, line := range proseLines(t, file) {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				path, anchor, _ := strings.Cut(target, "#")
				resolved := file
				if path != "" {
					resolved = filepath.Join(filepath.Dir(file), path)
				}
				if r, err := filepath.Rel(repo, resolved); err != nil || strings.HasPrefix(r, "..") {
					t.Errorf("%s: link %s points outside the repository", rel, target)
					continue
				}
				if _, err := os.Stat(resolved); err != nil {
					t.Errorf("%s: link %s: no such file", rel, target)
					continue
				}
				if anchor != "" && (!strings.HasSuffix(resolved, ".md") || !anchorsOf(resolved)[anchor]) {
					t.Errorf("%s: link %s: no heading with anchor #%s", rel, target, anchor)
				}
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d relative links found: is the checker reading the docs?", checked)
	}
	t.Logf("%d relative links in %d files resolve", checked, len(files))
}

// proseLines returns a Markdown file's lines outside fenced code blocks,
// with inline code spans removed.
func proseLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`[^`]*`")
	var out []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			out = append(out, code.ReplaceAllString(line, ""))
		}
	}
	return out
}

// headingAnchors returns the anchors GitHub makes for a file's headings:
// the text in lower case, without punctuation, spaces as hyphens, and -1,
// -2... for repeats.
func headingAnchors(t *testing.T, path string) map[string]bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	linkText := regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	anchors, seen := map[string]bool{}, map[string]int{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if in || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		text = linkText.ReplaceAllString(text, "$1")
		var s strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				s.WriteRune(r)
			case r == ' ':
				s.WriteByte('-')
			}
		}
		a := s.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return anchors
}
