package check

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
)

// LogPatterns are what Logs looks for: a Go panic, a fatal runtime error
// (concurrent map writes, out of memory, deadlock) and a race detector
// report.
var LogPatterns = []string{"panic:", "fatal error:", "WARNING: DATA RACE"}

// maxLogLine is how much of a matching line an anomaly quotes.
const maxLogLine = 200

// Logs scans node log files line by line for LogPatterns and reports each
// matching line as file:line: text (at most maxAnomaliesPerCheck per file).
//
// Valid proves: none of the files contains any of the patterns, anywhere in
// a line. A file that cannot be read is an anomaly too: a log that was not
// checked is not a clean one.
//
// Assumes: the files are the nodes' whole stderr and stdout (a panic or a
// race report goes to stderr, not to the structured log); a node that logs
// a pattern on purpose (a recovered panic) is a finding to look at anyway.
func Logs(paths ...string) Result {
	r := newResult("logs")
	for _, path := range paths {
		if err := scanLog(r, path); err != nil {
			r.anomaly("%s: not scanned: %v", path, err)
		}
	}
	return r.done()
}

func scanLog(r *result, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := capped{r: r, what: path}
	br := bufio.NewReader(f)
	for n := 1; ; n++ {
		// ReadString has no line length limit: a node may log huge lines.
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for _, p := range LogPatterns {
			if strings.Contains(line, p) {
				text := strings.TrimRight(line, "\r\n")
				if len(text) > maxLogLine {
					text = text[:maxLogLine] + "..."
				}
				c.anomaly("%s:%d: %s", path, n, text)
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.flush()
	return nil
}
