package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTagFollowsContent(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("one"), 0o755)
	os.WriteFile(b, []byte("two"), 0o755)
	ta, err := Tag(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := Tag(b)
	if ta == tb || !strings.HasPrefix(ta, Repository+":") || len(ta) != len(Repository)+1+12 {
		t.Fatalf("tags %q %q", ta, tb)
	}
	again, _ := Tag(a)
	if again != ta {
		t.Fatal("tag not stable")
	}
}

func TestCheckStaticRejectsNonELFAndDynamic(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	if err := CheckStatic(script); err == nil {
		t.Error("shell script accepted")
	}
	// /bin/sh is dynamically linked on every distribution this runs on.
	if err := CheckStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("dynamic binary: %v", err)
	}
}

func TestFindStackdExplicitMissing(t *testing.T) {
	if _, err := FindStackd(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("missing explicit binary accepted")
	}
}
