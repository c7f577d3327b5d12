// Package buildinfo describes the running binary: its module version and
// the VCS revision it was built from, as the Go toolchain records them
// (runtime/debug.ReadBuildInfo), for `coordd version` and `coordctl
// version`.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what the toolchain recorded about a build.
type Info struct {
	// Module is the main module's path; Version its version: a tag, a
	// pseudo-version (both "+dirty" when built from modified files), or
	// "(devel)" when the toolchain knew neither.
	Module, Version string
	// Revision, Time and Modified come from the VCS: the commit the build
	// was made from, its time, and whether the tree had uncommitted changes.
	// Empty when built without VCS information (-buildvcs=false, or from a
	// module cache as `go install ...@version` does).
	Revision, Time string
	Modified       bool
	// Go is the toolchain version; Platform is GOOS/GOARCH.
	Go, Platform string
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Module, info.Version = bi.Main.Path, bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// Short is the version with the revision's first 12 characters, for log
// lines: "v1.2.3", "(devel) 0123456789ab+modified".
func (i Info) Short() string {
	s := i.Version
	if i.Revision != "" && !strings.Contains(i.Version, i.Revision[:min(12, len(i.Revision))]) {
		s += " " + i.Revision[:min(12, len(i.Revision))]
		if i.Modified {
			s += "+modified"
		}
	}
	return s
}

// String is the full description of a program's build, one line:
// "coordd v1.2.3 (revision 0123…, 2026-12-01T10:00:00Z) go1.26.8 linux/amd64".
func (i Info) String(program string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", program, i.Version)
	switch {
	case i.Revision != "":
		fmt.Fprintf(&b, " (revision %s", i.Revision)
		if i.Time != "" {
			fmt.Fprintf(&b, ", %s", i.Time)
		}
		if i.Modified {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString(")")
	default:
		b.WriteString(" (no VCS revision recorded)")
	}
	fmt.Fprintf(&b, " %s %s", i.Go, i.Platform)
	return b.String()
}
