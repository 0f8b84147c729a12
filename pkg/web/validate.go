package web

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text checks a text field: required, its length in characters and that no
// control character gets in: none at all in single-line fields (they end up
// in email headers, CSV cells, calendar lines and pages), and only line
// breaks and tabs in long text (limit over 500).
func (v *Validation) Text(field, s string, limit int, required bool) {
	multiline := limit > 500
	switch {
	case required && strings.TrimSpace(s) == "":
		v.Add(field, "required")
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > limit:
		v.Add(field, "at most %d characters", limit)
	case HasControl(s, multiline):
		if multiline {
			v.Add(field, "must not contain control characters")
		} else {
			v.Add(field, "must be a single line without control characters")
		}
	}
}

// HasControl reports a control character (C0, DEL, C1 such as NEL) or a
// Unicode line or paragraph separator; multiline text may hold CR, LF and
// tab.
func HasControl(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return true
		}
	}
	return false
}

// ValidURL reports whether s is an absolute http(s) URL with a host and no
// spaces or control characters.
func ValidURL(s string) bool {
	if HasControl(s, false) || strings.ContainsAny(s, " \t") {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
