//go:build linux || darwin || freebsd

package server

import "golang.org/x/sys/unix"

// diskSpace returns the bytes an unprivileged process may still write on
// the file system of dir, and its size.
func diskSpace(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
