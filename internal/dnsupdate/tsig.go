package dnsupdate

import (
	"crypto/hmac"
	"encoding/hex"
	"strings"

	"github.com/miekg/dns"
)

// signer is the TsigProvider for one key. miekg/dns's own provider looks the
// key up by the name in the answer's TSIG record, which the server may write
// in another case than ours; a name compared without case avoids a
// "secret not found" on an update that landed.
type signer struct {
	name   string
	secret []byte
}

func (s signer) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if !strings.EqualFold(t.Hdr.Name, s.name) {
		return nil, dns.ErrSecret
	}
	newHash, ok := hmacs[dns.CanonicalName(t.Algorithm)]
	if !ok {
		return nil, dns.ErrKeyAlg
	}
	h := hmac.New(newHash, s.secret)
	h.Write(msg)
	return h.Sum(nil), nil
}

func (s signer) Verify(msg []byte, t *dns.TSIG) error {
	want, err := s.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil || !hmac.Equal(want, got) {
		return dns.ErrSig
	}
	return nil
}
