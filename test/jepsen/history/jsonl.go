package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Recorder collects the ops of one test. It keeps them in memory and, if it
// has a file, appends each op to it as one JSON line as soon as it is
// recorded, so that a history survives a harness that dies half-way. It is
// safe for concurrent use.
type Recorder struct {
	start time.Time

	mu     sync.Mutex
	ops    []Op
	f      *os.File
	werr   error // the first write error; later writes are not attempted
	closed bool
}

// NewRecorder starts the test clock and returns a Recorder that writes to a
// new file at path (an existing file is truncated), or keeps ops in memory
// only if path is "".
func NewRecorder(path string) (*Recorder, error) {
	r := &Recorder{start: time.Now()}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		r.f = f
	}
	return r, nil
}

// Now returns the time on the test clock: monotonic nanoseconds since
// NewRecorder. Take Call with it before sending a request, and Return after
// the answer.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Record sets op.Index to the op's position in the history, keeps the op and
// appends it to the file. It returns the op as recorded. The op is kept even
// if the file write fails (or the Recorder is closed); the error is returned
// then, and the first one by Close.
func (r *Recorder) Record(op Op) (Op, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	switch {
	case r.closed:
		return op, errors.New("history: record after Close")
	case r.f == nil || r.werr != nil:
		return op, r.werr
	}
	line, err := json.Marshal(op)
	if err == nil {
		_, err = r.f.Write(append(line, '\n'))
	}
	if err != nil {
		r.werr = fmt.Errorf("history: write op %d: %w", op.Index, err)
	}
	return op, r.werr
}

// Ops returns a copy of the ops recorded so far, in Index order.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Op, len(r.ops))
	copy(out, r.ops)
	return out
}

// Close syncs and closes the file, and returns the first error of any write,
// the sync or the close. The ops stay readable with Ops. A second Close
// returns nil.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.f == nil {
		return r.werr
	}
	err := errors.Join(r.f.Sync(), r.f.Close())
	r.f = nil
	if r.werr != nil {
		return r.werr
	}
	if err != nil {
		return fmt.Errorf("history: close: %w", err)
	}
	return nil
}

// Encode writes ops to w as JSON lines, one op per line.
func Encode(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			return fmt.Errorf("history: encode op %d: %w", op.Index, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Decode reads JSON lines written by Encode or a Recorder. Blank lines are
// skipped; a line that is not an op is an error naming its line number,
// except a last line without its newline, which a harness killed in the
// middle of a write may leave: it is dropped.
func Decode(r io.Reader) ([]Op, error) {
	br := bufio.NewReader(r)
	var ops []Op
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return ops, fmt.Errorf("history: line %d: %w", n, err)
		}
		complete := err == nil
		if len(bytes.TrimSpace(line)) > 0 {
			var op Op
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if derr := dec.Decode(&op); derr != nil {
				if !complete {
					return ops, nil
				}
				return ops, fmt.Errorf("history: line %d: %w", n, derr)
			}
			ops = append(ops, op)
		}
		if !complete {
			return ops, nil
		}
	}
}

// ReadFile reads a history file written by a Recorder or WriteFile.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	ops, err := Decode(f)
	if err != nil {
		return ops, fmt.Errorf("%w (in %s)", err, path)
	}
	return ops, nil
}

// WriteFile writes ops to a new file at path as JSON lines.
func WriteFile(path string, ops []Op) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := Encode(f, ops); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
