// Package valid checks names and other strings from users and peers
// without counted repetitions in regular expressions.
//
// A repetition such as {0,61} or {1,200} compiles to a program with a copy
// of its body per count; the dozen tandem had, compiled when the program
// starts, kept about a megabyte of heap for good, in tandemd and in the
// witness, whose memory target is tight. So names are checked by hand
// (Label, Name) and other patterns use unbounded repetitions with the
// length bounded apart (Bounded).
package valid

import "strings"

// Label reports whether s is one DNS label (RFC 1123): 1 to 63 letters,
// digits and hyphens, starting and ending with a letter or a digit. With
// lower, letters must be lower case (node names).
func Label(s string, lower bool) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z' && !lower:
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// Name reports whether s is labels (Label, any case) joined by dots; with
// trailingDot, one final dot (a fully qualified name) is allowed too. The
// length of the whole name is the caller's to bound (253 for DNS).
func Name(s string, trailingDot bool) bool {
	if trailingDot {
		s = strings.TrimSuffix(s, ".")
	}
	if s == "" {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !Label(l, false) {
			return false
		}
	}
	return true
}
