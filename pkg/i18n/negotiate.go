package i18n

import (
	"cmp"
	"slices"
	"strings"

	"golang.org/x/text/language"
)

// maxAcceptEntries bounds the work one Accept-Language header can cause.
const maxAcceptEntries = 16

// Negotiate picks the language to serve: the ?lang= query value, else the
// participant's stored locale, else the best match for the Accept-Language
// header, else the first allowed language. Only allowed languages (an event's
// locales) are picked; allowed entries that are not Supported are ignored, and
// none at all means Supported.
func Negotiate(query, stored, acceptLanguage string, allowed []string) string {
	offered := offeredLanguages(allowed)
	for _, v := range []string{query, stored} {
		if code := supportedBase(v, offered); code != "" {
			return code
		}
	}
	if code := bestAccepted(acceptLanguage, offered); code != "" {
		return code
	}
	return offered[0]
}

// offeredLanguages keeps the Supported codes of allowed, in allowed's order.
func offeredLanguages(allowed []string) []string {
	var offered []string
	for _, a := range allowed {
		if code := supportedBase(a, Supported); code != "" && !slices.Contains(offered, code) {
			offered = append(offered, code)
		}
	}
	if len(offered) == 0 {
		return Supported
	}
	return offered
}

// supportedBase returns the base language of tag ("de" for "de-AT" or "DE")
// if it is one of codes, else "".
func supportedBase(tag string, codes []string) string {
	t, err := language.Parse(strings.TrimSpace(tag))
	if err != nil {
		return ""
	}
	base, conf := t.Base()
	if conf != language.Exact || !slices.Contains(codes, base.String()) {
		return ""
	}
	return base.String()
}

// bestAccepted matches an Accept-Language header against offered; it returns
// "" when nothing matches with at least high confidence, so that, say,
// Ukrainian does not get Russian.
func bestAccepted(header string, offered []string) string {
	wanted := parseAcceptLanguage(header)
	if len(wanted) == 0 {
		return ""
	}
	tags := make([]language.Tag, len(offered))
	for i, code := range offered {
		tags[i] = language.Make(code)
	}
	_, i, conf := language.NewMatcher(tags).Match(wanted...)
	if conf < language.High {
		return ""
	}
	return offered[i]
}

// parseAcceptLanguage returns the header's languages, most wanted first. It
// parses entry by entry because language.ParseAcceptLanguage rejects a whole
// header for one unknown tag, and browsers do send odd ones.
func parseAcceptLanguage(header string) []language.Tag {
	type weighted struct {
		tag language.Tag
		q   float32
	}
	var entries []weighted
	n := 0
	for part := range strings.SplitSeq(header, ",") {
		if n++; n > maxAcceptEntries {
			break
		}
		tags, qs, err := language.ParseAcceptLanguage(part)
		if err != nil || len(tags) != 1 {
			continue // empty, q=0 or garbage
		}
		entries = append(entries, weighted{tags[0], qs[0]})
	}
	slices.SortStableFunc(entries, func(a, b weighted) int { return cmp.Compare(b.q, a.q) })
	tags := make([]language.Tag, len(entries))
	for i, e := range entries {
		tags[i] = e.tag
	}
	return tags
}
