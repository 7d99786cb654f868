package cluster

import (
	"fmt"
	"strings"

	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/inference-sandbox/sandbox/internal/progress"
)

// kindLogger shows kind's own step lines (" ✓ Starting control-plane") indented under the
// sandbox's current step, and drops kind's debug chatter.
type kindLogger struct{ status *progress.Status }

func newKindLogger(s *progress.Status) kindlog.Logger { return kindLogger{status: s} }

func (l kindLogger) Warn(message string) { l.status.Warnf("%s", strings.TrimSpace(message)) }
func (l kindLogger) Warnf(format string, args ...interface{}) {
	l.Warn(fmt.Sprintf(format, args...))
}
func (l kindLogger) Error(message string) { l.status.Warnf("%s", strings.TrimSpace(message)) }
func (l kindLogger) Errorf(format string, args ...interface{}) {
	l.Error(fmt.Sprintf(format, args...))
}

func (l kindLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return kindInfo{status: l.status, enabled: level <= 0}
}

type kindInfo struct {
	status  *progress.Status
	enabled bool
}

func (i kindInfo) Info(message string) {
	if !i.enabled {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(message, "\n"), "\n") {
		// kind marks step starts with "•"; its "✓"/"✗" results are enough for a user.
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "•") {
			i.status.Infof("kind: %s", t)
		}
	}
}

func (i kindInfo) Infof(format string, args ...interface{}) { i.Info(fmt.Sprintf(format, args...)) }
func (i kindInfo) Enabled() bool                            { return i.enabled }
