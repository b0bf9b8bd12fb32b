package dnsupdate

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// DefaultAlgorithm is the TSIG algorithm when neither the configuration
// nor the secret file names one; it is also tsig-keygen's default.
const DefaultAlgorithm = "hmac-sha256"

// hmacs are the TSIG algorithms a key may use, by their wire names.
// hmac-md5 is left out: miekg/dns no longer signs with it.
var hmacs = map[string]func() hash.Hash{
	dns.HmacSHA1:   sha1.New,
	dns.HmacSHA224: sha256.New224,
	dns.HmacSHA256: sha256.New,
	dns.HmacSHA384: sha512.New384,
	dns.HmacSHA512: sha512.New,
}

// algorithmName turns a name as BIND writes it ("hmac-sha256", in any
// case, with or without the final dot) into its wire name.
func algorithmName(s string) (string, error) {
	name := dns.CanonicalName(strings.TrimSpace(s))
	if _, ok := hmacs[name]; ok {
		return name, nil
	}
	var known []string
	for k := range hmacs {
		known = append(known, strings.TrimSuffix(k, "."))
	}
	sort.Strings(known)
	return "", fmt.Errorf("TSIG algorithm %q is not one of %s", s, strings.Join(known, ", "))
}

// show writes a DNS name the way named.conf does, without the final dot.
func show(name string) string {
	if name == "." {
		return name
	}
	return strings.TrimSuffix(name, ".")
}

// Key is a TSIG key. Name and Algorithm are empty when it was read from a
// file that holds only the secret.
type Key struct {
	Name      string // canonical: lower case, final dot
	Algorithm string // wire name, e.g. "hmac-sha256."
	Secret    []byte
}

// String shows the key without its secret.
func (k Key) String() string {
	return fmt.Sprintf("key %q %s (secret of %d bytes)", show(k.Name), show(k.Algorithm), len(k.Secret))
}

// maxKeyFile bounds what ReadKeyFile reads: a key is a few hundred bytes,
// and anything much larger is not a key file.
const maxKeyFile = 64 << 10

// ReadKeyFile reads a TSIG secret from path: either the base64 secret
// alone on one line, or one BIND key statement as tsig-keygen writes it:
//
//	key "name" {
//		algorithm hmac-sha256;
//		secret "base64";
//	};
//
// The file must be readable by its owner only: anyone who reads the secret
// can point the cluster name anywhere.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("while reading the TSIG secret file: %w", err)
	}
	defer f.Close()
	// Stat the file opened, not the path: what is checked is what is read.
	fi, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("while reading the TSIG secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("TSIG secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("TSIG secret file %s can be read or written by group or others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return Key{}, fmt.Errorf("while reading the TSIG secret file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return Key{}, fmt.Errorf("TSIG secret file %s is larger than %d bytes: it is not a key file", path, maxKeyFile)
	}
	k, err := parseKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("TSIG secret file %s: %w", path, err)
	}
	return k, nil
}

// parseKey tells the two formats apart: a bare secret is one word of
// base64, which has no blank, quote or brace; a key statement starts with
// "key" or a comment. ("//" may also start a base64 secret, hence the
// word is tried first.)
func parseKey(data []byte) (Key, error) {
	text := strings.TrimSpace(string(data))
	switch {
	case text == "":
		return Key{}, errors.New("the file is empty (want a base64 secret, or a key statement as tsig-keygen writes it)")
	case !strings.ContainsAny(text, " \t\r\n\"{};"):
		secret, err := decodeSecret(text)
		return Key{Secret: secret}, err
	case looksLikeKeyStatement(text):
		return parseKeyStatement(text)
	}
	return Key{}, errors.New("want the base64 secret alone on one line, or a key statement as tsig-keygen writes it")
}

func looksLikeKeyStatement(text string) bool {
	for _, c := range []string{"#", "//", "/*"} {
		if strings.HasPrefix(text, c) {
			return true
		}
	}
	rest, ok := strings.CutPrefix(text, "key")
	return ok && rest != "" && strings.ContainsRune(" \t\r\n\"", rune(rest[0]))
}

func decodeSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// The error names a byte offset, never the secret itself.
		return nil, fmt.Errorf("the secret is not valid base64 (%v)", err)
	}
	if len(b) == 0 {
		return nil, errors.New("the secret is empty")
	}
	return b, nil
}

// parseKeyStatement reads exactly one key statement.
func parseKeyStatement(text string) (Key, error) {
	toks, err := tokenize(text)
	if err != nil {
		return Key{}, err
	}
	p := &keyParser{toks: toks}
	k, err := p.statement()
	if err != nil {
		return Key{}, err
	}
	if t, ok := p.peek(); ok {
		return Key{}, fmt.Errorf("line %d: %s after the key statement: the file must hold one key only", t.line, t.describe())
	}
	return k, nil
}

type token struct {
	text   string
	quoted bool
	line   int
}

func (t token) is(s string) bool { return !t.quoted && t.text == s }

// describe names a token for an error message without echoing what may be
// the secret: punctuation and short lower-case words (keywords, misspelt
// or not) are shown, anything else only by its kind.
func (t token) describe() string {
	switch {
	case t.quoted:
		return "a quoted string"
	case len(t.text) <= 24 && strings.Trim(t.text, "abcdefghijklmnopqrstuvwxyz0123456789-{};") == "":
		return fmt.Sprintf("%q", t.text)
	}
	return "a word"
}

// tokenize splits named.conf syntax into words, quoted strings and the
// punctuation { } ;, dropping the three kinds of comment BIND accepts.
func tokenize(s string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: comment not closed with */", line)
			}
			line += strings.Count(s[i:i+2+end], "\n")
			i += end + 4
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 || strings.Contains(s[i+1:i+1+end], "\n") {
				return nil, fmt.Errorf("line %d: quoted string not closed on its line", line)
			}
			toks = append(toks, token{text: s[i+1 : i+1+end], quoted: true, line: line})
			i += end + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};\"#", rune(s[j])) {
				j++
			}
			toks = append(toks, token{text: s[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}

type keyParser struct {
	toks []token
	pos  int
}

func (p *keyParser) peek() (token, bool) {
	if p.pos >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.pos], true
}

func (p *keyParser) next(want string) (token, error) {
	t, ok := p.peek()
	if !ok {
		last := 1
		if len(p.toks) > 0 {
			last = p.toks[len(p.toks)-1].line
		}
		return token{}, fmt.Errorf("line %d: the key statement ends early: want %s", last, want)
	}
	p.pos++
	return t, nil
}

func (p *keyParser) expect(punct, after string) error {
	t, err := p.next(fmt.Sprintf("%q after %s", punct, after))
	if err != nil {
		return err
	}
	if !t.is(punct) {
		return fmt.Errorf("line %d: want %q after %s, not %s", t.line, punct, after, t.describe())
	}
	return nil
}

// word is a name or a value: a quoted string or a bare word.
func (p *keyParser) word(want string) (token, error) {
	t, err := p.next(want)
	if err != nil {
		return t, err
	}
	if t.is("{") || t.is("}") || t.is(";") {
		return t, fmt.Errorf("line %d: want %s, not %s", t.line, want, t.describe())
	}
	return t, nil
}

func (p *keyParser) statement() (Key, error) {
	kw, err := p.word(`a key statement`)
	if err != nil {
		return Key{}, err
	}
	if kw.quoted || kw.text != "key" {
		return Key{}, fmt.Errorf("line %d: want a key statement, not %s", kw.line, kw.describe())
	}
	name, err := p.word("the key's name")
	if err != nil {
		return Key{}, err
	}
	if _, ok := dns.IsDomainName(name.text); !ok || name.text == "" {
		return Key{}, fmt.Errorf("line %d: key name %q is not a valid DNS name", name.line, name.text)
	}
	if err := p.expect("{", "the key's name"); err != nil {
		return Key{}, err
	}
	k := Key{Name: dns.CanonicalName(name.text)}
	for {
		if t, ok := p.peek(); ok && t.is("}") {
			p.pos++
			break
		}
		field, err := p.word(`"algorithm", "secret" or "}"`)
		if err != nil {
			return Key{}, err
		}
		val, err := p.word("a value after " + field.describe())
		if err != nil {
			return Key{}, err
		}
		switch {
		case field.is("algorithm"):
			if k.Algorithm, err = algorithmName(val.text); err != nil {
				return Key{}, fmt.Errorf("line %d: %w", val.line, err)
			}
		case field.is("secret"):
			if k.Secret, err = decodeSecret(val.text); err != nil {
				return Key{}, fmt.Errorf("line %d: %w", val.line, err)
			}
		default:
			return Key{}, fmt.Errorf("line %d: %s in key %q: a key statement holds algorithm and secret only", field.line, field.describe(), name.text)
		}
		if err := p.expect(";", "the "+field.text); err != nil {
			return Key{}, err
		}
	}
	if err := p.expect(";", "the key statement's }"); err != nil {
		return Key{}, err
	}
	if k.Secret == nil {
		return Key{}, fmt.Errorf("key %q has no secret", name.text)
	}
	if k.Algorithm == "" {
		// BIND refuses a key without an algorithm; so do we, rather than
		// guess one that the server would then answer with BADKEY.
		return Key{}, fmt.Errorf("key %q has no algorithm", name.text)
	}
	return k, nil
}
