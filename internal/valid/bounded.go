package valid

import "regexp"

// Pattern is a regular expression whose repetitions are unbounded (+, *)
// together with the bounds on the length of the whole string, in bytes.
type Pattern struct {
	re       *regexp.Regexp
	min, max int
}

// Bounded compiles expr (which must not need counted repetitions) and
// bounds the strings it matches to min..max bytes.
func Bounded(expr string, min, max int) Pattern {
	return Pattern{re: regexp.MustCompile(expr), min: min, max: max}
}

// MatchString reports whether s has an allowed length and matches.
func (p Pattern) MatchString(s string) bool {
	return len(s) >= p.min && len(s) <= p.max && p.re.MatchString(s)
}
