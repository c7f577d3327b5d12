package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/coordd/coordd/fsm"
)

// ErrDataCorrupt means a file in the node's data dir failed a check at
// startup: the node refuses to start rather than serve a state that may be
// wrong. Errors that match it name the file and say what to do.
var ErrDataCorrupt = errors.New("server: data dir corrupt")

// corruptAdvice ends every ErrDataCorrupt message.
const corruptAdvice = "this node refuses to start rather than serve a state that may be wrong. " +
	"Stop it, move its data dir aside and start it empty with -join to rejoin the cluster " +
	"(its peers still hold the data), or restore from a snapshot backup if no healthy node is left"

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s; %s", ErrDataCorrupt, fmt.Sprintf(format, args...), corruptAdvice)
}

// What is checked at startup, and why (measured on 2 shared cores):
//
//   - raft.db, the bbolt file: bbolt verifies the checksums of its two meta
//     pages at open (one bad meta falls back on the other, two refuse to
//     open). With NoFreelistSync, every read-write open also walks the
//     whole B+tree to rebuild the free list; but it checks page types with
//     assertions that panic on bbolt's own goroutine, where no recover can
//     reach: a corrupted page used to crash the process with "assertion
//     failed: page 391: has unexpected type/flags" and no file name.
//     checkBoltFile walks the same pages first, read-only, on a goroutine
//     of ours, and turns any panic or fault into ErrDataCorrupt. It costs
//     what the open's own walk costs: measured 1.5 ms for 10k entries of
//     100 B (8 MiB file), 8–9 ms for 10k of 4 KiB (68 MiB), 22 ms for 100k
//     of 200 B (81 MiB). tx.Check is not run: it adds nothing for a file
//     whose free list is rebuilt at every open, and asserts on its own
//     goroutine too.
//   - the log entries: verifyLog reads every entry (raft reads every entry
//     after the snapshot at startup anyway; measured 26 ms for 10k entries,
//     the default log's size, 250 ms for 100k) and checks that each command
//     entry decodes and that its CRC-32C (envelope version 2) matches, so
//     a flipped byte anywhere in the log stops the node here, before Raft
//     starts, with the entry's index. An entry that raft-boltdb cannot
//     decode (a msgpack error) is reported the same way; Raft itself would
//     panic on it ("failed to get log") while starting.
//   - snapshots: see snapshotGuard.
//
// After startup, an entry that fails its checksum when it is applied makes
// FSM.Apply panic (the process exits, Raft does not recover it), with a
// first line that names the entry and says what to do.

// checkBoltFile reads every bucket, key and value of the bbolt file at path
// (read-only) and reports a corrupted page as ErrDataCorrupt. It returns
// the indexes of the log entries it holds, in order. A missing file is not
// an error (a new node).
func checkBoltFile(path string) (logIndexes []uint64, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("server: open %s: %w (is another coordd using this data dir?)", path, err)
		}
		return nil, corrupt("bbolt cannot open %s: %v", path, err)
	}
	defer db.Close()
	done := make(chan error, 1)
	go func() {
		// A page id past the end of the mapped file faults instead of
		// panicking; make it a panic we can recover.
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				done <- corrupt("%s has a corrupted page: bbolt: %v", path, p)
			}
		}()
		done <- db.View(func(tx *bolt.Tx) error {
			n := 0
			if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				return walkBucket(b, &n)
			}); err != nil {
				return err
			}
			// raft-boltdb's "logs" bucket: big-endian uint64 keys.
			if b := tx.Bucket([]byte("logs")); b != nil {
				return b.ForEach(func(k, _ []byte) error {
					if len(k) != 8 {
						return fmt.Errorf("log key %x is not an index", k)
					}
					logIndexes = append(logIndexes, binary.BigEndian.Uint64(k))
					return nil
				})
			}
			return nil
		})
	}()
	if err := <-done; err != nil {
		if errors.Is(err, ErrDataCorrupt) {
			return nil, err
		}
		return nil, corrupt("reading %s: %v", path, err)
	}
	return logIndexes, nil
}

func walkBucket(b *bolt.Bucket, n *int) error {
	return b.ForEach(func(k, v []byte) error {
		*n++
		if v == nil {
			if sub := b.Bucket(k); sub != nil {
				return walkBucket(sub, n)
			}
		}
		return nil
	})
}

// verifyLog reads every entry of the log store (the indexes checkBoltFile
// found) and checks that command entries decode and pass their checksum,
// that configuration entries decode, and that the log holds every entry
// after the newest snapshot (snapIndex; 0: none). Entries at or before it
// may be missing: a restore or an installed snapshot leaves holes there,
// and Raft never reads them. path names the file in errors.
func verifyLog(logs raft.LogStore, path string, indexes []uint64, snapIndex uint64, snapID string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = corrupt("%s: reading the log panicked: %v", path, p)
		}
	}()
	if len(indexes) == 0 {
		return nil
	}
	first, last := indexes[0], indexes[len(indexes)-1]
	if first > snapIndex+1 {
		if snapID == "" {
			return corrupt("%s starts at entry %d but there is no snapshot: entries 1..%d are missing", path, first, first-1)
		}
		return corrupt("%s starts at entry %d but the newest snapshot (%s) ends at %d: entries %d..%d are missing",
			path, first, snapID, snapIndex, snapIndex+1, first-1)
	}
	var l raft.Log
	for n, i := range indexes {
		if n > 0 && i != indexes[n-1]+1 && i-1 > snapIndex {
			return corrupt("%s: entries %d..%d are missing (the log holds %d..%d; the newest snapshot ends at %d)",
				path, max(indexes[n-1], snapIndex)+1, i-1, first, last, snapIndex)
		}
		if err := logs.GetLog(i, &l); err != nil {
			return corrupt("%s: log entry %d (of %d..%d) cannot be read: %v", path, i, first, last, err)
		}
		if l.Index != i {
			return corrupt("%s: log entry %d is stored as index %d", path, i, l.Index)
		}
		switch l.Type {
		case raft.LogCommand:
			if _, err := fsm.DecodeCommand(l.Data); err != nil {
				return corrupt("%s: log entry %d (term %d) is corrupt: %v", path, i, l.Term, err)
			}
		case raft.LogConfiguration:
			if err := decodeConfiguration(l.Data); err != nil {
				return corrupt("%s: log entry %d (term %d), a configuration, is corrupt: %v", path, i, l.Term, err)
			}
		}
	}
	return nil
}

// decodeConfiguration is raft.DecodeConfiguration, which panics on bad
// input, as an error.
func decodeConfiguration(b []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	raft.DecodeConfiguration(b)
	return nil
}

// snapshotGuard makes Raft use the newest snapshot on disk or nothing.
//
// Raft's file snapshot store keeps state.bin and meta.json per snapshot,
// with a CRC-64 of state.bin in meta.json (checked when it is opened), and
// coordd's state.bin has its own CRC-32C trailer (checked by FSM.Restore).
// But at startup Raft tries the snapshots from newest to oldest and takes
// the first that restores, and the store silently skips a snapshot whose
// meta.json does not parse. Falling back on an older snapshot is only safe
// if the log still holds every entry after it; once the log was compacted
// behind the newer snapshot, the entries in between are gone, and Raft
// panics ("log not found") while starting, with no word of the snapshot.
// So List returns only the newest snapshot, and fails if the newest
// snapshot directory has no readable meta.json: a corrupt newest snapshot
// stops the node at startup with ErrDataCorrupt. (Raft only ever uses the
// first snapshot List returns once it runs.) An operator who removes the
// bad snapshot directory gets the older one, and checkLogCoversSnapshot
// refuses to start if the log does not continue it (verifyLog).
type snapshotGuard struct {
	dir string // the snapshots directory
}

// dirs lists the snapshot directories Raft's store looks at (all but
// the temporary ones).
func (g snapshotGuard) dirs() ([]string, error) {
	entries, err := os.ReadDir(g.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: read snapshot dir: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// parseSnapshotName splits Raft's "term-index-milliseconds" directory name.
func parseSnapshotName(name string) ([3]uint64, bool) {
	var key [3]uint64
	parts := strings.Split(name, "-")
	if len(parts) != 3 {
		return key, false
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return key, false
		}
		key[i] = v
	}
	return key, true
}

func olderKey(a, b [3]uint64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// check refuses any snapshot directory that the store could not read
// (or that is not named after its own id), unless its name shows it is
// older than the newest snapshot the store did read: it might be the
// newest.
func (g snapshotGuard) check(metas []*raft.SnapshotMeta) error {
	dirs, err := g.dirs()
	if err != nil {
		return err
	}
	read := map[string]bool{}
	var newestKey [3]uint64
	haveNewest := false
	if len(metas) > 0 {
		newestKey, haveNewest = parseSnapshotName(metas[0].ID)
	}
	for _, m := range metas {
		read[m.ID] = true
	}
	for _, d := range dirs {
		if read[d] {
			continue
		}
		if key, ok := parseSnapshotName(d); ok && haveNewest && olderKey(key, newestKey) {
			continue
		}
		path := filepath.Join(g.dir, d, "meta.json")
		var why string
		b, err := os.ReadFile(path)
		switch {
		case err != nil:
			why = err.Error()
		default:
			var m raft.SnapshotMeta
			switch err := json.Unmarshal(b, &m); {
			case err != nil:
				why = "it does not parse: " + err.Error()
			case m.ID != d:
				why = fmt.Sprintf("it names snapshot %q, not its directory", m.ID)
			default:
				why = fmt.Sprintf("snapshot version %d is not supported", m.Version)
			}
		}
		return corrupt("snapshot %s may be the newest but its meta.json is unreadable (%s); falling back on an older snapshot could skip entries the log no longer holds", filepath.Dir(path), why)
	}
	return nil
}

// List returns the newest snapshot only (see snapshotGuard), or
// ErrDataCorrupt if the newest snapshot directory is unreadable.
func (s *statsSnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.SnapshotStore.List()
	if err != nil {
		return nil, err
	}
	if err := s.guard.check(metas); err != nil {
		return nil, err
	}
	if len(metas) > 1 {
		metas = metas[:1]
	}
	return metas, nil
}

// Open records its error for the startup message.
func (s *statsSnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		err = fmt.Errorf("snapshot %s: %w", filepath.Join(s.guard.dir, id), err)
		s.openErr.Store(&err)
	}
	return meta, rc, err
}

// snapshotRestoreError explains NewRaft's failure to restore the newest
// snapshot at startup (Raft logs the cause just before).
func (s *statsSnapshotStore) snapshotRestoreError(err error) error {
	if !strings.Contains(err.Error(), "failed to load any existing snapshots") {
		return err
	}
	why := "see the error Raft logged just before: failed to open or restore snapshot"
	if p := s.openErr.Load(); p != nil {
		why = (*p).Error()
	}
	return corrupt("the newest snapshot in %s cannot be restored (%s)", s.guard.dir, why)
}

// openBoltStore opens the Raft log and stable store, turning a panic of
// bbolt's open (its free-list rebuild asserts on what it reads) into
// ErrDataCorrupt naming the file.
func openBoltStore(path string) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if p := recover(); p != nil {
			store, err = nil, corrupt("bbolt cannot open %s: %v", path, p)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path: path,
		// The options DESIGN.md names (the array freelist and its sync
		// are a known source of write latency).
		BoltOptions: &bolt.Options{
			Timeout:        time.Second,
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("server: open raft store %s: %w", path, err)
	}
	return store, nil
}

// checkData verifies the newest snapshot's directory and the log entries
// (and that the log continues the snapshot), before Raft starts.
func (s *Server) checkData(snaps *statsSnapshotStore, dbPath string, logIndexes []uint64, start time.Time) error {
	metas, err := snaps.List()
	if err != nil {
		return err
	}
	var snapIndex uint64
	var snapID string
	if len(metas) > 0 {
		snapIndex, snapID = metas[0].Index, metas[0].ID
	}
	if err := verifyLog(s.store, dbPath, logIndexes, snapIndex, snapID); err != nil {
		return err
	}
	if len(logIndexes) > 0 {
		s.log.Info("data dir checked", "log_entries", len(logIndexes), "snapshot_index", snapIndex,
			"took", time.Since(start).Round(time.Microsecond))
	}
	return nil
}

// checkedLogStore verifies the checksum of every command entry read from
// the bbolt store after startup (it sits below Raft's log cache, so only
// reads from disk pay: a CRC-32C, no allocation). An entry damaged on disk
// while the node runs is then never applied (a follower's Raft panics on
// the error, whose first line says what is wrong) nor sent to a follower
// (the leader's replication to that follower stops, logged, instead of
// spreading the damage).
type checkedLogStore struct {
	raft.LogStore
	path string
	log  hclog.Logger
}

// GetLog implements raft.LogStore.
func (c *checkedLogStore) GetLog(index uint64, l *raft.Log) error {
	if err := c.LogStore.GetLog(index, l); err != nil {
		return err
	}
	if l.Type == raft.LogCommand {
		if err := fsm.VerifyChecksum(l.Data); err != nil {
			err = fmt.Errorf("coordd: log entry %d (term %d) read from %s is corrupt: %v; "+
				"it is neither applied nor sent to followers. If this node stops, move its data dir aside and rejoin it; "+
				"if it leads, transfer leadership away, then do the same", index, l.Term, c.path, err)
			c.log.Error("corrupt log entry", "error", err)
			return err
		}
	}
	return nil
}
