package postgres

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// TestSCRAMVerifierAgainstRFC7677 checks the verifier with the exchange
// of RFC 7677, section 3 (user "user", password "pencil"): a server that
// holds only the verifier must accept the client's proof and answer with
// the server signature printed there, exactly as PostgreSQL does with
// what it stores.
func TestSCRAMVerifierAgainstRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := scramVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	head, keys, ok := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$"), "$")
	if !ok || !strings.HasPrefix(v, "SCRAM-SHA-256$") || head != "4096:W22ZaJ0SNY7soEsUEjb6gQ==" {
		t.Fatalf("verifier %q is not SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>", v)
	}
	sk, svk, _ := strings.Cut(keys, ":")
	storedKey, err1 := base64.StdEncoding.DecodeString(sk)
	serverKey, err2 := base64.StdEncoding.DecodeString(svk)
	if err1 != nil || err2 != nil || len(storedKey) != 32 || len(serverKey) != 32 {
		t.Fatalf("keys of %q are not two base64 SHA-256 values", v)
	}

	const nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	authMessage := "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=" + nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=" + nonce
	proof, _ := base64.StdEncoding.DecodeString("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	// The server's check: ClientKey = proof XOR HMAC(StoredKey, AuthMessage),
	// and H(ClientKey) must be StoredKey.
	sig := mac(storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	if h := sha256.Sum256(clientKey); !hmac.Equal(h[:], storedKey) {
		t.Errorf("the RFC's client proof does not match the StoredKey of %q", v)
	}
	if got := base64.StdEncoding.EncodeToString(mac(serverKey, authMessage)); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Errorf("server signature %s, want the RFC's 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", got)
	}
}

func TestSCRAMVerifierSaltsAndRefuses(t *testing.T) {
	a, err := SCRAMVerifier("Secret-123")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SCRAMVerifier("Secret-123")
	if a == b {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	if strings.Contains(a, "Secret-123") || !strings.HasPrefix(a, "SCRAM-SHA-256$4096:") {
		t.Errorf("verifier %q", a)
	}
	// Spaces are printable, but no password tandem makes has one;
	// refusing them keeps the rule simple.
	for _, pw := range []string{"", "with space", "naïve", "tab\there"} {
		if _, err := SCRAMVerifier(pw); err == nil {
			t.Errorf("SCRAMVerifier(%q) accepted", pw)
		}
	}
	if _, err := SCRAMVerifier("it's-fine"); err != nil {
		t.Errorf("a quote is printable ASCII: %v", err)
	}
}
