package valid

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The regular expressions these functions replace: they must agree on
// every string.
var (
	labelRE     = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	lowerRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	nameRE      = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	nameDotRE   = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.?$`)
	interesting = []string{"", ".", "..", "a", "a.", ".a", "a..b", "-a", "a-", "a-b", "A", "db.example.net", "db.example.net.", "db.example.net..",
		"xn--bcher-kva.example", "a_b", "a b", "a\n", "é", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 63) + "." + strings.Repeat("b", 63),
		strings.Repeat("a", 62) + "-", "0", "1-2-3", "a.-b", "a.b-"}
)

func check(t *testing.T, s string) {
	t.Helper()
	if got, want := Label(s, false), labelRE.MatchString(s); got != want {
		t.Errorf("Label(%q, false) = %v, the expression says %v", s, got, want)
	}
	if got, want := Label(s, true), lowerRE.MatchString(s); got != want {
		t.Errorf("Label(%q, true) = %v, the expression says %v", s, got, want)
	}
	if got, want := Name(s, false), nameRE.MatchString(s); got != want {
		t.Errorf("Name(%q, false) = %v, the expression says %v", s, got, want)
	}
	if got, want := Name(s, true), nameDotRE.MatchString(s); got != want {
		t.Errorf("Name(%q, true) = %v, the expression says %v", s, got, want)
	}
}

func TestAgreesWithTheExpressions(t *testing.T) {
	for _, s := range interesting {
		check(t, s)
	}
	// Random strings over an alphabet where every rule matters.
	const alphabet = "aZ09-._ "
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		n := r.IntN(12)
		if r.IntN(50) == 0 {
			n = 60 + r.IntN(8) // around the 63-character bound
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(t, string(b))
	}
}

// Each Bounded pattern tandem uses agrees with the counted expression it
// replaces.
func TestBoundedAgrees(t *testing.T) {
	cases := []struct {
		counted string
		p       Pattern
		alpha   string
	}{
		{`^[A-Za-z0-9-]{16,128}$`, Bounded(`^[A-Za-z0-9-]+$`, 16, 128), "aZ9-_"},
		{`^/[A-Za-z0-9/_.-]{1,200}$`, Bounded(`^/[A-Za-z0-9/_.-]+$`, 2, 201), "/a_.-+"},
		{`^[0-9A-Za-z][0-9A-Za-z.+~:-]{0,63}$`, Bounded(`^[0-9A-Za-z][0-9A-Za-z.+~:-]*$`, 1, 64), "1a.+~:-_"},
		{`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`, Bounded(`^[A-Za-z0-9][A-Za-z0-9._-]*$`, 1, 253), "a._-/"},
		{`^[a-z0-9_]{1,63}$`, Bounded(`^[a-z0-9_]+$`, 1, 63), "a0_A"},
		{`^sha256:[0-9a-f]{64}$`, Bounded(`^sha256:[0-9a-f]+$`, 71, 71), "0fg"},
		{`^[A-Za-z0-9_-]{1,63}$`, Bounded(`^[A-Za-z0-9_-]+$`, 1, 63), "aZ_-."},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range cases {
		re := regexp.MustCompile(c.counted)
		prefix := ""
		if c.counted[1] == '/' {
			prefix = "/"
		} else if strings.HasPrefix(c.counted, "^sha256:") {
			prefix = "sha256:"
		}
		for range 20000 {
			n := r.IntN(c.p.max + 4)
			b := make([]byte, n)
			for i := range b {
				b[i] = c.alpha[r.IntN(len(c.alpha))]
			}
			for _, s := range []string{string(b), prefix + string(b)} {
				if got, want := c.p.MatchString(s), re.MatchString(s); got != want {
					t.Errorf("%s: %q: Bounded says %v, the counted expression %v", c.counted, s, got, want)
				}
			}
		}
	}
}
