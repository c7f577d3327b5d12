package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func Test_UI_ConsoleShowsAStateDigestMismatch(t *testing.T) {
	if os.Getenv("COORDD_UI_TEST") != "1" {
		t.Skip("the browser test runs with COORDD_UI_TEST=1 (make test-ui)")
	}
	exe := chromiumPath()
	if exe == "" {
		t.Skip("no Chromium found (make test-ui installs Debian's chromium; or set COORDD_CHROMIUM)")
	}
	procs := perturbedCluster(t, 150, digestFlags...)
	writeKeys(t, procs[0], "ui", 250)
	alarmFor(t, procs[0], "n3", 60*time.Second)

	br := newBrowser(t, exe)
	br.do("open the console", chromedp.Navigate(procs[0].url()+"/ui/"))
	br.waitFor("the mismatch banner", `document.getElementById('banner').textContent`, 15*time.Second, func(v string) bool {
		return strings.Contains(v, "State digest mismatch") && strings.Contains(v, "n3") && strings.Contains(v, "coordctl alarm disarm n3")
	})
	br.waitFor("n3 marked in the cluster table", `document.querySelector('[data-alarm="n3"]').textContent`, 10*time.Second, func(v string) bool {
		return v == "state differs"
	})
	t.Logf("screenshot: %s", br.screenshot("digest-mismatch"))
}
