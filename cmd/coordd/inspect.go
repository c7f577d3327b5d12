package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/snapshot"
)

// readHeader reads the header of the snapshot file f again from its start.
func readHeader(f *os.File) (snapshot.Header, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return snapshot.Header{}, err
	}
	r, err := snapshot.NewReader(f)
	if err != nil {
		return snapshot.Header{}, err
	}
	return r.Header(), nil
}

// snapshotSummary is what `coordd snapshot inspect` prints.
type snapshotSummary struct {
	File          string `json:"file"`
	Bytes         int64  `json:"bytes"`
	FormatVersion uint16 `json:"format_version"`
	Index         uint64 `json:"index"`
	Term          uint64 `json:"term"`
	// Records is the number of records the header declares (0 for a
	// format 1 file, which declares none).
	Records   uint64 `json:"records"`
	Keys      int    `json:"keys"`
	Leases    int    `json:"leases"`
	Elections int    `json:"elections"`
	Members   int    `json:"members"`
	DedupKeys int    `json:"idempotency_keys"`
	// Digest identifies the data (keys, leases, elections): a backup and
	// the cluster restored from it show the same digest.
	Digest string `json:"digest"`
	// RestorePending marks a state installed by a restore that no leader
	// has finished yet.
	RestorePending bool `json:"restore_pending,omitempty"`
	// With -v: every lease and every election or lock.
	LeaseList    []leaseSummary    `json:"lease_list,omitempty"`
	ElectionList []electionSummary `json:"election_list,omitempty"`
}

type leaseSummary struct {
	ID       uint64 `json:"id"`
	TTLMs    int64  `json:"ttl_ms"`
	Attached int    `json:"attached"`
}

type electionSummary struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Holders []struct {
		Lease uint64 `json:"lease"`
		Token uint64 `json:"token"`
	} `json:"holders"`
	Waiting int `json:"waiting"`
}

// listState fills the -v lists.
func listState(sum *snapshotSummary, st *fsm.State) {
	for _, l := range st.Leases() {
		sum.LeaseList = append(sum.LeaseList, leaseSummary{ID: l.ID, TTLMs: l.TTL, Attached: len(st.Attachments(l.ID))})
	}
	for _, e := range st.Elections() {
		es := electionSummary{Name: e.Name, Kind: e.Kind.String(), Waiting: len(e.Waiting)}
		for _, h := range e.Holders {
			es.Holders = append(es.Holders, struct {
				Lease uint64 `json:"lease"`
				Token uint64 `json:"token"`
			}{h.Lease, h.Token})
		}
		sum.ElectionList = append(sum.ElectionList, es)
	}
}

// runSnapshot runs `coordd snapshot inspect [-o json] [-v] FILE`: it reads
// the whole file, verifies its checksum and record counts, and prints what
// is in it (with -v, every lease and every election or lock too). Exit 0 when the file is sound, 1 when it is corrupt or truncated, 2 on
// bad usage.
func runSnapshot(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "inspect" {
		fmt.Fprintln(stderr, "usage: coordd snapshot inspect [-o json] [-v] FILE")
		return 2
	}
	fs := flag.NewFlagSet("coordd snapshot inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("o", "table", "output: table or json")
	verbose := fs.Bool("v", false, "list every lease and every election and lock")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 || (*format != "table" && *format != "json") {
		fmt.Fprintln(stderr, "usage: coordd snapshot inspect [-o json] [-v] FILE")
		return 2
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "coordd: snapshot inspect:", err)
		return 1
	}
	defer f.Close()
	st, err := fsm.ReadState(f)
	var h snapshot.Header
	if err == nil {
		h, err = readHeader(f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "coordd: snapshot inspect: %s is not a sound snapshot: %v\n", path, err)
		return 1
	}
	info, _ := f.Stat()
	sum := snapshotSummary{File: path, Bytes: info.Size(), FormatVersion: h.Version, Index: st.Index(), Term: st.Term(),
		Records: h.Total(), Keys: st.KVLen(), Leases: st.LeaseCount(), Elections: len(st.Elections()),
		Members: len(st.Members()), DedupKeys: st.DedupLen(), Digest: st.Digest(), RestorePending: st.Restore().Pending}
	if *verbose {
		listState(&sum, st)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sum)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	records := strconv.FormatUint(sum.Records, 10)
	if sum.FormatVersion < 2 {
		records = "not declared (format 1)"
	}
	fmt.Fprintf(tw, "file\t%s\nbytes\t%d\nformat version\t%d\nchecksum\tok\nindex\t%d\nterm\t%d\nrecords\t%s\nkeys\t%d\nleases\t%d\nelections and locks\t%d\nmembers\t%d\nidempotency keys\t%d\ndigest\t%s\n",
		sum.File, sum.Bytes, sum.FormatVersion, sum.Index, sum.Term, records, sum.Keys, sum.Leases, sum.Elections,
		sum.Members, sum.DedupKeys, sum.Digest)
	if sum.RestorePending {
		fmt.Fprintf(tw, "restore\tpending (installed by a restore no leader has finished)\n")
	}
	_ = tw.Flush()
	if *verbose {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nLEASE\tTTL\tATTACHED")
		for _, l := range sum.LeaseList {
			fmt.Fprintf(tw, "%d\t%s\t%d\n", l.ID, time.Duration(l.TTLMs)*time.Millisecond, l.Attached)
		}
		fmt.Fprintln(tw, "\nNAME\tKIND\tHOLDER LEASE:TOKEN\tWAITING")
		for _, e := range sum.ElectionList {
			var hs []string
			for _, h := range e.Holders {
				hs = append(hs, fmt.Sprintf("%d:%d", h.Lease, h.Token))
			}
			if len(hs) == 0 {
				hs = []string{"-"}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", e.Name, e.Kind, strings.Join(hs, ","), e.Waiting)
		}
		_ = tw.Flush()
	}
	return 0
}
