package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Image is a Target kind: an image (or OCI chart) whose manifest must exist in its registry.
// URL is the reference ("ghcr.io/llm-d/llm-d-inference-sim:v0.10.2", "nginx:1.29-alpine",
// "oci://mcr.microsoft.com/aks/kaito/helm/llm-gateway-apikey" with Version as the tag).
const Image = "image"

// manifestTypes are what a registry may answer for a tag: a multi-platform index or a single
// manifest, OCI or Docker.
var manifestTypes = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// splitRef splits an image reference into its registry base URL, repository and tag.
func splitRef(ref, version string) (base, repo, tag string, err error) {
	ref = strings.TrimPrefix(ref, "oci://")
	base = RegistryURL(ref)
	host, rest, found := strings.Cut(ref, "/")
	if !found || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		rest = ref // no registry host: Docker Hub
	}
	if i := strings.Index(rest, "@"); i >= 0 {
		rest, tag = rest[:i], rest[i+1:]
	} else if i := strings.LastIndex(rest, ":"); i >= 0 {
		rest, tag = rest[:i], rest[i+1:]
	}
	if version != "" {
		tag = version
	}
	if tag == "" {
		tag = "latest"
	}
	if strings.HasSuffix(base, "registry-1.docker.io") && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" {
		return "", "", "", fmt.Errorf("image reference %q has no repository", ref)
	}
	return base, rest, tag, nil
}

// probeImage asks the registry whether the tag exists, getting an anonymous pull token first
// when the registry demands one (Docker Hub, GHCR), the way `docker pull` does.
func probeImage(ctx context.Context, client *http.Client, t Target) error {
	base, repo, tag, err := splitRef(t.URL, t.Version)
	if err != nil {
		return err
	}
	manifest := fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, tag)
	resp, err := headManifest(ctx, client, manifest, "")
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		token, err := anonymousToken(ctx, client, resp.Header.Get("Www-Authenticate"), repo)
		if err != nil {
			return err
		}
		if resp, err = headManifest(ctx, client, manifest, token); err != nil {
			return err
		}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("no tag %s of %s in the registry", tag, repo)
	default:
		return fmt.Errorf("manifest of %s:%s: registry answered %s", repo, tag, resp.Status)
	}
}

func headManifest(ctx context.Context, client *http.Client, u, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestTypes)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// anonymousToken follows a `Bearer realm=...,service=...` challenge for a pull-only token.
func anonymousToken(ctx context.Context, client *http.Client, challenge, repo string) (string, error) {
	scheme, params, _ := strings.Cut(challenge, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("registry wants %q authentication, not an anonymous token", scheme)
	}
	fields := map[string]string{}
	for _, p := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			fields[strings.ToLower(k)] = strings.Trim(v, `"`)
		}
	}
	realm, err := url.Parse(fields["realm"])
	if err != nil || realm.Scheme == "" {
		return "", fmt.Errorf("registry token challenge has no usable realm: %q", challenge)
	}
	q := realm.Query()
	if s := fields["service"]; s != "" {
		q.Set("service", s)
	}
	q.Set("scope", "repository:"+repo+":pull")
	realm.RawQuery = q.Encode()
	resp, err := do(ctx, client, realm.String())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("anonymous pull token for %s: %s", repo, resp.Status)
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", fmt.Errorf("anonymous pull token for %s: %w", repo, err)
	}
	if tok.Token != "" {
		return tok.Token, nil
	}
	if tok.AccessToken != "" {
		return tok.AccessToken, nil
	}
	return "", fmt.Errorf("anonymous pull token for %s: empty answer", repo)
}
