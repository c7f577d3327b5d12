// Package jepsen is coordd's fault-injection suite: its tests
// (TestJepsen_*) start real coordd processes, inject faults on a seeded
// schedule (package harness), record every client operation (package
// history) and check the history (package check). See docs/testing.md,
// "Fault injection (make jepsen)", for how to run it and read a failure.
package jepsen
