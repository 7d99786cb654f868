// Package preflight answers, from the host and within seconds, whether the upstream profile's
// charts and images can be fetched, before `up` creates anything. It only sends HTTPS requests
// from this process (never from a container or a cluster node), to the chart repositories and
// registries the pins in internal/versions name.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// Kind of a Target.
const (
	// ChartRepo: an HTTP Helm repository whose index.yaml must list Chart at Version.
	ChartRepo = "chart-repo"
	// Registry: an OCI registry (images, OCI charts) whose /v2/ endpoint must answer.
	Registry = "registry"
	// File: a URL that must answer 200 (a pinned release manifest).
	File = "file"
)

// Target is one thing the upstream profile fetches.
type Target struct {
	Kind string
	// URL is the repository URL (ChartRepo), the registry's base URL (Registry) or the file.
	URL            string
	Chart, Version string
}

func (t Target) String() string {
	switch t.Kind {
	case ChartRepo:
		return fmt.Sprintf("chart %s %s from %s", t.Chart, t.Version, t.URL)
	case Registry:
		return "registry " + hostOf(t.URL)
	case Image:
		if t.Version != "" {
			return "image " + strings.TrimPrefix(t.URL, "oci://") + ":" + t.Version
		}
		return "image " + t.URL
	default:
		return t.URL
	}
}

// Result is the outcome of one target.
type Result struct {
	Target Target
	Err    error
}

// Check probes every target in parallel, each bounded by timeout, and returns the failures
// in the order of targets.
func Check(ctx context.Context, client *http.Client, targets []Target, timeout time.Duration) []Result {
	if client == nil {
		client = &http.Client{}
	}
	results := make([]Result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] = Result{Target: t, Err: probe(ctx, client, t)}
		}()
	}
	wg.Wait()
	var failed []Result
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, r)
		}
	}
	return failed
}

// Error is the one line `up` prints when the upstream profile cannot be fetched.
func Error(failed []Result) error {
	if len(failed) == 0 {
		return nil
	}
	first := failed[0]
	more := ""
	if len(failed) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(failed)-1)
	}
	return fmt.Errorf("the upstream profile cannot fetch its charts and images: %s: %v%s; use --profile offline, which needs no internet", first.Target, oneLine(first.Err), more)
}

func probe(ctx context.Context, client *http.Client, t Target) error {
	switch t.Kind {
	case ChartRepo:
		body, err := get(ctx, client, strings.TrimSuffix(t.URL, "/")+"/index.yaml", 32<<20)
		if err != nil {
			return err
		}
		return indexHas(body, t.Chart, t.Version)
	case Registry:
		// Any answer of the Docker registry API means the registry is there; 401 is what an
		// anonymous client normally gets before its token round-trip.
		resp, err := do(ctx, client, strings.TrimSuffix(t.URL, "/")+"/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("registry answered %s", resp.Status)
		}
		return nil
	case Image:
		return probeImage(ctx, client, t)
	case File:
		resp, err := do(ctx, client, t.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("answered %s", resp.Status)
		}
		return nil
	}
	return fmt.Errorf("unknown target kind %q", t.Kind)
}

func do(ctx context.Context, client *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

func get(ctx context.Context, client *http.Client, u string, limit int64) ([]byte, error) {
	resp, err := do(ctx, client, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

// indexHas reports whether a Helm repository index lists chart at version.
func indexHas(index []byte, chart, version string) error {
	var idx struct {
		Entries map[string][]struct {
			Version string `json:"version"`
		} `json:"entries"`
	}
	if err := yaml.Unmarshal(index, &idx); err != nil {
		return fmt.Errorf("reading the repository index: %w", err)
	}
	entries, ok := idx.Entries[chart]
	if !ok {
		return fmt.Errorf("the repository has no chart %q", chart)
	}
	want := strings.TrimPrefix(version, "v")
	for _, e := range entries {
		if strings.TrimPrefix(e.Version, "v") == want {
			return nil
		}
	}
	return fmt.Errorf("the repository has no version %s of chart %s", version, chart)
}

// RegistryURL is the base URL of an image's or OCI chart's registry (Docker Hub's API lives
// on registry-1.docker.io).
func RegistryURL(ref string) string {
	ref = strings.TrimPrefix(ref, "oci://")
	host, _, found := strings.Cut(ref, "/")
	if !found || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		host = "docker.io"
	}
	if host == "docker.io" || host == "index.docker.io" {
		host = "registry-1.docker.io"
	}
	return "https://" + host
}

// RegistryTargets are the distinct registries of refs (images or oci:// charts).
func RegistryTargets(refs []string) []Target {
	var urls []string
	for _, r := range refs {
		u := RegistryURL(r)
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	slices.Sort(urls)
	out := make([]Target, len(urls))
	for i, u := range urls {
		out[i] = Target{Kind: Registry, URL: u}
	}
	return out
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return u
	}
	return p.Host
}

// oneLine keeps an error on one line (DNS and TLS errors sometimes carry newlines).
func oneLine(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
