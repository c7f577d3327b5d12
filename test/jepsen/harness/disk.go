package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultDiskMiB is the size of each node's data-dir mount when a scenario
// has the FullDisk fault and sets no size: room for a few snapshots and the
// Raft log of a quick run, small enough to fill in a moment.
const DefaultDiskMiB = 128

// fillName is the file the full-disk fault writes into a node's data dir.
const fillName = "jepsen-disk-fill"

// mountDisks puts every node's data dir on a tmpfs of its own of mib MiB,
// so that one node's disk can be filled without touching the machine's. It
// needs root (CAP_SYS_ADMIN); where mounting is refused it returns why, and
// nothing stays mounted. The returned function unmounts them all (lazily, so
// that a file still open cannot keep a mount behind).
func mountDisks(nodes []*Node, mib int) (unmount func(), err error) {
	var mounted []string
	unmount = func() {
		for _, dir := range mounted {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}
	for _, n := range nodes {
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			unmount()
			return nil, err
		}
		opts := fmt.Sprintf("size=%dm,mode=0755", mib)
		if err := syscall.Mount("tmpfs", n.DataDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
			unmount()
			return nil, fmt.Errorf("mount a %d MiB tmpfs on %s (needs root): %w", mib, n.DataDir, err)
		}
		mounted = append(mounted, n.DataDir)
	}
	return unmount, nil
}

// fillDisk writes zeros into a file in dir until the file system says it is
// full (ENOSPC), first in 1 MiB chunks, then in 4 KiB ones, and syncs it. It
// returns how many bytes it wrote. The node keeps running: its next log
// append, snapshot or bbolt page allocation fails with ENOSPC.
func fillDisk(dir string) (int64, error) {
	f, err := os.OpenFile(filepath.Join(dir, fillName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	for _, size := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, size)
		// Bounded: a disk larger than 64 GiB is not the small mount this
		// fault expects.
		for i := 0; i < 1<<16; i++ {
			n, err := f.Write(buf)
			total += int64(n)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return total, fmt.Errorf("fill %s: %w", dir, err)
			}
		}
	}
	_ = f.Sync()
	return total, nil
}

// freeDisk removes what fillDisk wrote.
func freeDisk(dir string) error {
	err := os.Remove(filepath.Join(dir, fillName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
