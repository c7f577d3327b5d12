package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDockerPrometheus starts the compose cluster with its optional
// Prometheus (profile "monitoring", an image made by `make image-prometheus`
// from Debian's prometheus package) and checks that it scrapes every
// member, loads coordd's alert rules, and fires CoorddMemberDown and
// CoorddQuorumAtRisk once a member's container stops.
func TestDockerPrometheus(t *testing.T) {
	if os.Getenv("COORDD_DOCKER_TEST") != "1" {
		t.Skip("container tests run with COORDD_DOCKER_TEST=1 (make test-docker)")
	}
	if testing.Short() {
		t.Skip("container tests are skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	out, err := exec.CommandContext(ctx, "docker", "info").CombinedOutput()
	cancel()
	if err != nil {
		t.Skipf("docker info failed, no Docker to test with: %v: %s", err, lastLine(out))
	}
	cl := start(t)
	image := "coordd-prometheus:test-" + cl.suffix
	port := freePorts(t, 1)[0]
	cl.env = append(cl.env, "PROMETHEUS_IMAGE="+image, fmt.Sprintf("HOST_PORT_PROMETHEUS=%d", port))
	t.Cleanup(func() { // runs before start's `down`, which does not know the profile
		name, args := cl.composeArgs("--profile", "monitoring", "rm", "-s", "-f", "-v", "prometheus")
		if _, err := cl.run(2*time.Minute, name, args...); err != nil {
			t.Logf("cleanup: %v", err)
		}
		cl.run(time.Minute, "docker", "volume", "rm", cl.project+"_prometheus-data")
		cl.run(time.Minute, "docker", "rmi", image)
	})
	if out, err := cl.run(5*time.Minute, "make", "image-prometheus", "PROMETHEUS_IMAGE="+image); err != nil {
		if _, lerr := exec.LookPath("prometheus"); lerr != nil {
			t.Skipf("no Prometheus image: Debian's prometheus package is not installed and could not be: %s", lastLine([]byte(out)))
		}
		t.Fatal(err)
	}
	name, args := cl.composeArgs("--profile", "monitoring", "up", "-d", "prometheus")
	cl.must(3*time.Minute, name, args...)
	prom := fmt.Sprintf("http://127.0.0.1:%d", port)

	cl.poll(90*time.Second, "Prometheus scraping n1, n2 and n3", func() error {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := promGet(prom+"/api/v1/targets", &r); err != nil {
			return err
		}
		up := 0
		for _, tg := range r.Data.ActiveTargets {
			if tg.Labels["job"] == "coordd" && tg.Health == "up" {
				up++
			}
		}
		if up != len(nodes) {
			return fmt.Errorf("%d of %d targets up: %+v", up, len(nodes), r.Data.ActiveTargets)
		}
		return nil
	})

	rulesFile, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	wantRules := strings.Count(string(rulesFile), "- alert: ")
	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := promGet(prom+"/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules.Data.Groups) != 1 || len(rules.Data.Groups[0].Rules) != wantRules {
		t.Fatalf("Prometheus loaded %+v, want one group of the %d rules of alerts.yml", rules.Data.Groups, wantRules)
	}

	// A member stops: after the rules' `for` (1 minute) and a scrape or
	// two, both alerts fire.
	t0 := time.Now()
	cl.must(time.Minute, "docker", "stop", "-t", "2", cl.container("n3"))
	cl.poll(3*time.Minute, "CoorddMemberDown and CoorddQuorumAtRisk firing", func() error {
		var r struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := promGet(prom+"/api/v1/alerts", &r); err != nil {
			return err
		}
		firing := map[string]bool{}
		for _, a := range r.Data.Alerts {
			if a.State == "firing" {
				firing[a.Labels["alertname"]+"/"+a.Labels["instance"]] = true
			}
		}
		if !firing["CoorddMemberDown/n3"] || !firing["CoorddQuorumAtRisk/"] {
			return fmt.Errorf("firing: %v", firing)
		}
		return nil
	})
	t.Logf("CoorddMemberDown and CoorddQuorumAtRisk fired %v after n3 stopped", time.Since(t0).Round(time.Second))
}

func promGet(url string, v any) error {
	resp, err := httpc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// poll calls f every half second until it returns nil, and fails the test
// with f's last error after timeout.
func (cl *cluster) poll(timeout time.Duration, what string, f func() error) {
	cl.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			cl.t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
