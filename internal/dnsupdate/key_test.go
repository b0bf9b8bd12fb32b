package dnsupdate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// secret32 is base64 of 32 bytes, as tsig-keygen writes.
const secret32 = "ACcLMWjfbUj6yX9FogTqyqXGcl8Dwbyj/x2hrHVfHxQ="

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask: set it as asked.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadKeyFileFormats(t *testing.T) {
	for _, c := range []struct {
		what, content string
		want          Key
	}{
		{"bare secret", secret32 + "\n", Key{}},
		{"bare secret, blanks around", "  " + secret32 + " \r\n\n", Key{}},
		{"bare secret that starts like a comment", "//" + secret32[2:], Key{}},
		{"tsig-keygen", "key \"tandem-db\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret32 + "\";\n};\n",
			Key{Name: "tandem-db.", Algorithm: dns.HmacSHA256}},
		{"one line, unquoted name, upper case", "key Tandem.Example. { algorithm HMAC-SHA512; secret \"" + secret32 + "\"; };",
			Key{Name: "tandem.example.", Algorithm: dns.HmacSHA512}},
		{"comments of three kinds", "# made by tsig-keygen\n// for the cluster name\nkey \"k\" { /* old: hmac-md5 */\n algorithm hmac-sha1; # legacy\n secret \"" + secret32 + "\"; };",
			Key{Name: "k.", Algorithm: dns.HmacSHA1}},
		{"secret before algorithm", "key k { secret \"" + secret32 + "\"; algorithm hmac-sha256; };",
			Key{Name: "k.", Algorithm: dns.HmacSHA256}},
	} {
		k, err := ReadKeyFile(writeKeyFile(t, c.content, 0o600))
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if k.Name != c.want.Name || k.Algorithm != c.want.Algorithm || len(k.Secret) != 32 {
			t.Errorf("%s: got %q %q and a secret of %d bytes, want %q %q and 32 bytes", c.what, k.Name, k.Algorithm, len(k.Secret), c.want.Name, c.want.Algorithm)
		}
	}
}

// Every error names the file and what is wrong, and never shows the secret.
func TestReadKeyFileErrors(t *testing.T) {
	stmt := func(body string) string { return "key \"k\" {\n" + body + "};\n" }
	for _, c := range []struct {
		what, content, want string
	}{
		{"empty", "\n\n", "the file is empty"},
		{"not base64", "not-base64!\n", "the secret is not valid base64"},
		{"words", "this is not a key\n", "want the base64 secret alone on one line, or a key statement"},
		{"two lines", secret32 + "\n" + secret32 + "\n", "want the base64 secret alone on one line"},
		{"no algorithm", stmt("\tsecret \"" + secret32 + "\";\n"), `key "k" has no algorithm`},
		{"no secret", stmt("\talgorithm hmac-sha256;\n"), `key "k" has no secret`},
		{"unknown algorithm", stmt("\talgorithm hmac-md5;\n\tsecret \"" + secret32 + "\";\n"), `line 2: TSIG algorithm "hmac-md5" is not one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512`},
		{"secret not base64", stmt("\talgorithm hmac-sha256;\n\tsecret \"@@@@\";\n"), "line 3: the secret is not valid base64"},
		{"misspelt field", stmt("\talgoritm hmac-sha256;\n"), `line 2: "algoritm" in key "k": a key statement holds algorithm and secret only`},
		{"missing semicolon", stmt("\talgorithm hmac-sha256\n\tsecret \"" + secret32 + "\";\n"), `line 3: want ";" after the algorithm, not "secret"`},
		{"secret unquoted, semicolon missing", stmt("\talgorithm hmac-sha256;\n\tsecret " + secret32 + "\n"), `line 4: want ";" after the secret, not "}"`},
		{"no final semicolon", "key k { algorithm hmac-sha256; secret \"" + secret32 + "\"; }", `line 1: the key statement ends early: want ";" after the key statement's }`},
		{"cut short", "key k { algorithm hmac-sha256;\n", `line 1: the key statement ends early: want "algorithm", "secret" or "}"`},
		{"two keys", stmt("\talgorithm hmac-sha256;\n\tsecret \""+secret32+"\";\n") + stmt("\talgorithm hmac-sha256;\n\tsecret \""+secret32+"\";\n"), `line 5: "key" after the key statement: the file must hold one key only`},
		{"comment, then a bare secret", "# the secret\n" + secret32 + "\n", "line 2: want a key statement, not a word"},
		{"open comment", "key k { /* algorithm hmac-sha256;\n", "line 1: comment not closed with */"},
		{"open quote", "key \"k { algorithm hmac-sha256;\n", "line 1: quoted string not closed on its line"},
		{"bad name", "key \"a..b\" { algorithm hmac-sha256; secret \"" + secret32 + "\"; };", `line 1: key name "a..b" is not a valid DNS name`},
	} {
		path := writeKeyFile(t, c.content, 0o600)
		_, err := ReadKeyFile(path)
		if err == nil {
			t.Errorf("%s: no error", c.what)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "TSIG secret file "+path+": ") || !strings.Contains(msg, c.want) {
			t.Errorf("%s:\n got %s\nwant TSIG secret file %s: ...%s", c.what, msg, path, c.want)
		}
		if strings.Contains(msg, secret32) || strings.Contains(msg, secret32[:12]) {
			t.Errorf("%s: the error shows the secret: %s", c.what, msg)
		}
	}
}

func TestReadKeyFileRefusesOpenModes(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o660, 0o644} {
		path := writeKeyFile(t, secret32+"\n", mode)
		_, err := ReadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: got %v, want an error naming %s and chmod 600", mode, err, path)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if _, err := ReadKeyFile(writeKeyFile(t, secret32+"\n", mode)); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

func TestReadKeyFileOtherFailures(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKeyFile(filepath.Join(dir, "absent.key")); err == nil || !strings.Contains(err.Error(), "absent.key") {
		t.Errorf("a missing file: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	big := writeKeyFile(t, string(bytes.Repeat([]byte("A"), maxKeyFile+1)), 0o600)
	if _, err := ReadKeyFile(big); err == nil || !strings.Contains(err.Error(), "it is not a key file") {
		t.Errorf("a large file: %v", err)
	}
}

func TestAlgorithmNames(t *testing.T) {
	for in, want := range map[string]string{
		"hmac-sha256": dns.HmacSHA256, "hmac-sha256.": dns.HmacSHA256, "HMAC-SHA512": dns.HmacSHA512,
		"hmac-sha1": dns.HmacSHA1, " hmac-sha384 ": dns.HmacSHA384, "hmac-sha224": dns.HmacSHA224,
	} {
		if got, err := algorithmName(in); err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "sha256", "hmac-md5", "hmac-md5.sig-alg.reg.int."} {
		if _, err := algorithmName(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
