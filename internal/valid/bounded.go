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

var clusterName = Bounded(`^[A-Za-z0-9][A-Za-z0-9._-]*$`, 1, 253)

// ClusterName reports whether name is a cluster name tandem accepts: what
// assembly takes (letters, digits and ._-, starting with a letter or a
// digit, at most 253 characters).
func ClusterName(name string) bool { return clusterName.MatchString(name) }
