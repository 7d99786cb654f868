//go:build !linux

package extproc

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist; the data plane runs on Linux.
func setUserTimeout(_, _ string, _ syscall.RawConn) error { return nil }
