package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
)

// SCRAM-SHA-256 parameters, PostgreSQL's defaults (scram_iterations,
// SCRAM_DEFAULT_SALT_LEN).
const (
	scramIterations = 4096
	scramSaltLen    = 16
)

// SCRAMVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, as psql's \password does (RFC 5802, RFC 7677), with a random
// salt. A role's password set to a verifier is stored as it is, so the
// password itself never reaches the server, its log or pg_stat_statements.
//
// Only printable ASCII without spaces is accepted: PostgreSQL runs a
// password through SASLprep first, which leaves that as it is but could
// change other text.
func SCRAMVerifier(password string) (string, error) {
	salt := make([]byte, scramSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return scramVerifier(password, salt, scramIterations)
}

func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	if password == "" {
		return "", fmt.Errorf("an empty password has no SCRAM verifier")
	}
	for _, c := range []byte(password) {
		if c < 0x21 || c > 0x7e {
			return "", fmt.Errorf("the password holds a character other than printable ASCII, which SASLprep could change")
		}
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(iterations) + ":" + b64(salt) + "$" + b64(storedKey[:]) + ":" + b64(serverKey), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
