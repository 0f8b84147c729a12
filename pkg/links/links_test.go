package links

import (
	"strings"
	"testing"
)

func TestTokenRoundTripAndRejections(t *testing.T) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	tok := s.Token(Manage, "01JREG", 3)
	id, v, err := s.Parse(Manage, tok)
	if err != nil || id != "01JREG" || v != 3 {
		t.Fatalf("Parse(%q) = %q, %d, %v; want 01JREG, 3, nil", tok, id, v, err)
	}

	other, _ := NewSigner([]byte(strings.Repeat("x", 32)))
	bad := map[string]struct {
		signer  *Signer
		purpose string
		token   string
	}{
		"other purpose":    {s, Join, tok},
		"other key":        {other, Manage, tok},
		"tampered id":      {s, Manage, strings.Replace(tok, "01JREG", "01JREH", 1)},
		"tampered version": {s, Manage, strings.Replace(tok, ".3.", ".4.", 1)},
		"leading zero":     {s, Manage, strings.Replace(tok, ".3.", ".03.", 1)},
		"truncated mac":    {s, Manage, tok[:len(tok)-1]},
		"no dots":          {s, Manage, "garbage"},
		"empty":            {s, Manage, ""},
		"negative version": {s, Manage, s.Token(Manage, "01JREG", -1)},
		"empty id":         {s, Manage, s.Token(Manage, "", 1)},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			if _, _, err := tc.signer.Parse(tc.purpose, tc.token); err != ErrInvalid {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRotationChangesToken(t *testing.T) {
	s, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	if s.Token(Join, "r", 1) == s.Token(Join, "r", 2) {
		t.Fatal("rotating the version must change the token")
	}
	if s.Token(Join, "r", 1) == s.Token(Manage, "r", 1) {
		t.Fatal("join and manage tokens must differ")
	}
}

func TestShortKeyRefused(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("a short key must be refused")
	}
}
