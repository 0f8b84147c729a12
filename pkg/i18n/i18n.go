// Package i18n translates Plenary's pages and messages into the languages an
// event offers. Messages live in one TOML file per language under locales/,
// embedded in the binary; English is the reference and the fallback for any
// message a translation lacks. The package also picks a participant's
// language (Negotiate), formats dates in it (Localizer.DateTime), and lists
// the time zones people choose from (Zones) and loads them (LoadZone).
package i18n

import (
	"embed"
	"fmt"
	"maps"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// Supported lists the language codes Plenary is translated into; the first,
// English, is the fallback.
var Supported = []string{"en", "fr", "de", "it", "ru", "es"}

// Names gives each supported language's name in that language, for a
// language picker.
var Names = map[string]string{
	"en": "English",
	"fr": "Français",
	"de": "Deutsch",
	"it": "Italiano",
	"ru": "Русский",
	"es": "Español",
}

//go:embed locales/active.*.toml
var localeFiles embed.FS

// Catalog holds every language's messages. It is safe for concurrent use.
type Catalog struct {
	bundle *i18n.Bundle
}

// New loads the embedded message files of all Supported languages.
func New() (*Catalog, error) {
	bundle := i18n.NewBundle(language.English)
	bundle.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	for _, lang := range Supported {
		if _, err := bundle.LoadMessageFileFS(localeFiles, localePath(lang)); err != nil {
			return nil, fmt.Errorf("i18n: load %s: %w", lang, err)
		}
	}
	return &Catalog{bundle: bundle}, nil
}

// localePath names the embedded message file of a language.
func localePath(lang string) string { return "locales/active." + lang + ".toml" }

// For returns a Localizer for lang, a code such as "de" or "de-AT"; a
// language that is not Supported gets English.
func (c *Catalog) For(lang string) *Localizer {
	code := supportedBase(lang, Supported)
	if code == "" {
		code = Supported[0]
	}
	return &Localizer{lang: code, loc: i18n.NewLocalizer(c.bundle, code)}
}

// Localizer renders messages and dates in one language. It is safe for
// concurrent use.
type Localizer struct {
	lang string
	loc  *i18n.Localizer
}

// Lang returns the Localizer's language code, one of Supported.
func (l *Localizer) Lang() string { return l.lang }

// T returns message id filled with data (maps are merged, later keys win).
// A message missing in this language comes in English, and an unknown id
// comes back as the id itself. Plural messages need N. The result is plain
// text: escape it for HTML.
func (l *Localizer) T(id string, data ...map[string]any) string {
	var merged map[string]any
	if len(data) > 0 {
		merged = map[string]any{}
		for _, d := range data {
			maps.Copy(merged, d)
		}
	}
	return l.localize(&i18n.LocalizeConfig{MessageID: id, TemplateData: merged})
}

// Tf is T with data as name, value pairs, the form a template can pass:
// {{.L.Tf "agenda.was" "Value" .Was}}. A trailing name without a value is
// ignored.
func (l *Localizer) Tf(id string, pairs ...any) string {
	data := make(map[string]any, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		data[fmt.Sprint(pairs[i])] = pairs[i+1]
	}
	return l.T(id, data)
}

// N returns the plural form of message id that fits count, as the
// language's CLDR rules pick it (Russian: one, few, many). The message sees
// count as {{.Count}} unless data sets Count itself.
func (l *Localizer) N(id string, count int, data map[string]any) string {
	merged := map[string]any{"Count": count}
	maps.Copy(merged, data)
	return l.localize(&i18n.LocalizeConfig{MessageID: id, TemplateData: merged, PluralCount: count})
}

// localize never fails: go-i18n returns its best effort (the English text,
// or the "other" form when a plural form is missing) along with the error,
// and only when there is nothing at all do we fall back to the id.
func (l *Localizer) localize(cfg *i18n.LocalizeConfig) string {
	msg, _ := l.loc.Localize(cfg)
	if msg == "" {
		return cfg.MessageID
	}
	return msg
}
