package sim

import "unicode/utf8"

// The simulator only implements upstream's dummy tokenizer (facts §1.12): a token is a run of
// ASCII word characters or one other non-space character, together with the whitespace that
// follows it; its id is the FNV-1a-32 hash of the token text. Leading whitespace of the whole
// text belongs to no token. It is hand-written rather than a regexp because it runs on every
// request's prompt.

func isWordByte(c byte) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isSpaceByte is Go regexp's \s: [\t\n\f\r ].
func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// nextToken returns the end of the token starting at i (i must not be at whitespace).
func nextToken(s string, i int) int {
	if isWordByte(s[i]) {
		for i < len(s) && isWordByte(s[i]) {
			i++
		}
	} else if s[i] < utf8.RuneSelf {
		i++
	} else {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	for i < len(s) && isSpaceByte(s[i]) {
		i++
	}
	return i
}

func skipLeadingSpace(s string) int {
	i := 0
	for i < len(s) && isSpaceByte(s[i]) {
		i++
	}
	return i
}

// countTokens returns the number of tokens in s without allocating.
func countTokens(s string) int {
	n := 0
	for i := skipLeadingSpace(s); i < len(s); n++ {
		i = nextToken(s, i)
	}
	return n
}

// splitTokens appends the token texts of s (substrings of s) to dst.
func splitTokens(dst []string, s string) []string {
	for i := skipLeadingSpace(s); i < len(s); {
		j := nextToken(s, i)
		dst = append(dst, s[i:j])
		i = j
	}
	return dst
}

// tokenIDs appends the token ids of s to dst.
func tokenIDs(dst []uint32, s string) []uint32 {
	for i := skipLeadingSpace(s); i < len(s); {
		j := nextToken(s, i)
		dst = append(dst, fnv32a(s[i:j]))
		i = j
	}
	return dst
}

func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
