package versions

import (
	"strings"
	"testing"
	"time"
)

func TestUpstreamTable(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range Upstream {
		key := p.Kind + " " + p.Name
		if seen[key] {
			t.Errorf("%s pinned twice", key)
		}
		seen[key] = true
		if _, err := time.Parse("2006-01-02", p.Checked); err != nil {
			t.Errorf("%s: checked date %q: %v", key, p.Checked, err)
		}
		if p.Version == "" || p.Version == "latest" || strings.Contains(p.Version, "nightly") {
			t.Errorf("%s: %q is not a pin", key, p.Version)
		}
		switch p.Kind {
		case "image":
			if !strings.HasSuffix(p.Source, ":"+p.Version) {
				t.Errorf("%s: image %s is not tagged %s", key, p.Source, p.Version)
			}
		case "chart", "manifest", "test-schemas":
		default:
			t.Errorf("%s: unknown kind", key)
		}
	}
	upstreamRows := 0
	for _, p := range Table {
		if strings.HasPrefix(p.Name, "upstream ") {
			upstreamRows++
		}
	}
	if upstreamRows != len(Upstream) {
		t.Errorf("Table has %d upstream rows, want every one of the %d upstream pins", upstreamRows, len(Upstream))
	}
	if len(UpstreamImages()) < 5 {
		t.Errorf("UpstreamImages: %v", UpstreamImages())
	}
}
