// Command lockclient is the agent of one client of the fenced-lock
// workload of the fault-injection tests (test/jepsen/workload): the
// workload starts one lockclient process per lock client and drives it
// over stdin and stdout (package test/jepsen/lockclient/agent describes
// the protocol), so that pausing a client is a real SIGSTOP of its process,
// keepalives and all. It exits when its stdin ends.
package main

import (
	"fmt"
	"os"

	"github.com/coordd/coordd/test/jepsen/lockclient/agent"
)

func main() {
	if err := agent.Serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lockclient:", err)
		os.Exit(1)
	}
}
