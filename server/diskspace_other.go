//go:build !(linux || darwin || freebsd)

package server

import "errors"

// diskSpace is not measured on this platform: the disk gauges are left out.
func diskSpace(string) (free, total uint64, err error) {
	return 0, 0, errors.New("server: disk space is not measured on this platform")
}
