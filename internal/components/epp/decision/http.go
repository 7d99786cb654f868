package decision

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
)

// Handler serves GET /decisions: the recent records as newline-delimited JSON, oldest first.
// Query parameters: limit=N (default: the whole ring), follow=1 to keep the response open and
// stream every new record as it is made.
func (g *Ring) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		limit := len(g.buf)
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
				return
			}
			limit = n
		}
		follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-cache")
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		if !follow {
			for _, e := range g.Recent(limit) {
				if enc.Encode(e) != nil {
					return
				}
			}
			_ = bw.Flush()
			return
		}
		backlog, ch := g.follow(limit)
		defer g.unfollow(ch)
		flusher, _ := w.(http.Flusher)
		flush := func() bool {
			if bw.Flush() != nil {
				return false
			}
			if flusher != nil {
				flusher.Flush()
			}
			return true
		}
		for _, e := range backlog {
			if enc.Encode(e) != nil {
				return
			}
		}
		if !flush() {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case e := <-ch:
				if enc.Encode(e) != nil {
					return
				}
				// Drain whatever else is queued before flushing: one write per burst.
				for more := true; more; {
					select {
					case e = <-ch:
						if enc.Encode(e) != nil {
							return
						}
					default:
						more = false
					}
				}
				if !flush() {
					return
				}
			}
		}
	})
}
