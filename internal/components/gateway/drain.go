package gateway

import "github.com/inference-sandbox/sandbox/internal/extproc"

// Drain says how a stopping data plane lets go of its clients: for Delay it keeps serving with
// readiness failing and `Connection: close` on every response, then gives in-flight requests,
// streams of a long answer included, up to Timeout (extproc.HTTPDrain).
type Drain = extproc.HTTPDrain
