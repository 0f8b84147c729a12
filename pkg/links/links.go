// Package links makes and checks participants' personal tokens: the manage
// link (view, change, cancel a registration) and the join link (open the
// meeting). A token is HMAC-SHA256 over purpose, registration id and link
// version, so rotating the version invalidates every older link.
package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// Purposes a token can be made for.
const (
	Manage = "manage"
	Join   = "join"
)

// ErrInvalid is returned for a token that is malformed, forged, or made for
// another purpose.
var ErrInvalid = errors.New("links: invalid token")

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 32

// Signer makes and checks tokens with one secret key.
type Signer struct{ key []byte }

// NewSigner returns a signer for key, which must be at least MinKeyLen bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, errors.New("links: LINK_KEY must be at least 32 bytes")
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// Token returns the token for purpose, registration id and link version:
// "<id>.<version>.<mac>". It carries no personal data.
func (s *Signer) Token(purpose, id string, version int) string {
	v := strconv.Itoa(version)
	return id + "." + v + "." + s.mac(purpose, id, v)
}

// Parse checks token for purpose in constant time and returns the
// registration id and link version it was made for. The caller must still
// compare the version with the registration's current one.
func (s *Signer) Parse(purpose, token string) (id string, version int, err error) {
	id, rest, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		return "", 0, ErrInvalid
	}
	v, mac, ok := strings.Cut(rest, ".")
	if !ok {
		return "", 0, ErrInvalid
	}
	version, err = strconv.Atoi(v)
	if err != nil || version < 0 || strconv.Itoa(version) != v {
		return "", 0, ErrInvalid
	}
	if !hmac.Equal([]byte(mac), []byte(s.mac(purpose, id, v))) {
		return "", 0, ErrInvalid
	}
	return id, version, nil
}

func (s *Signer) mac(purpose, id, version string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(version))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
