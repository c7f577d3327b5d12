package server_test

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
)

// The gauges that the disk and clock-skew alert rules read are on every
// node, with values that make sense.
func Test_Metrics_DiskSpaceAndLeaseExtension(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 1)
	r := c.Do(http.MethodGet, c.Nodes[0].URL()+"/metrics", "")
	got := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && !strings.HasPrefix(name, "#") {
			got[name], _ = strconv.ParseFloat(val, 64)
		}
	}
	free, size, ext := got["coordd_data_dir_free_bytes"], got["coordd_data_dir_size_bytes"], got["coordd_lease_extension_seconds"]
	if free <= 0 || size <= 0 || free > size {
		t.Errorf("data dir free %v bytes of %v: want 0 < free <= size", free, size)
	}
	if ext <= 0 || ext > 60 {
		t.Errorf("coordd_lease_extension_seconds = %v", ext)
	}
}
