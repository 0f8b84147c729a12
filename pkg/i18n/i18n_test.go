package i18n

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // check Zones against the zone data services embed

	"github.com/BurntSushi/toml"
	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

func newCatalog(t *testing.T) *Catalog {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// messages parses one embedded locale file into id → message.
func messages(t *testing.T, lang string) map[string]*goi18n.Message {
	t.Helper()
	buf, err := localeFiles.ReadFile(localePath(lang))
	if err != nil {
		t.Fatalf("read %s: %v", lang, err)
	}
	f, err := goi18n.ParseMessageFileBytes(buf, localePath(lang), map[string]goi18n.UnmarshalFunc{"toml": toml.Unmarshal})
	if err != nil {
		t.Fatalf("parse %s: %v", lang, err)
	}
	byID := map[string]*goi18n.Message{}
	for _, m := range f.Messages {
		byID[m.ID] = m
	}
	return byID
}

var placeholder = regexp.MustCompile(`{{\s*\.(\w+)\s*}}`)

// forms returns a message's plural forms by CLDR name, the empty ones left out.
func forms(m *goi18n.Message) map[string]string {
	all := map[string]string{"zero": m.Zero, "one": m.One, "two": m.Two, "few": m.Few, "many": m.Many, "other": m.Other}
	maps.DeleteFunc(all, func(_, v string) bool { return v == "" })
	return all
}

// placeholders lists the distinct {{.Names}} used in any form of m.
func placeholders(m *goi18n.Message) []string {
	var names []string
	for _, text := range forms(m) {
		for _, match := range placeholder.FindAllStringSubmatch(text, -1) {
			names = append(names, match[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// pluralForms are the CLDR forms each language needs for whole numbers or,
// for fr, it and es, millions.
var pluralForms = map[string][]string{
	"en": {"one", "other"},
	"de": {"one", "other"},
	"fr": {"many", "one", "other"},
	"it": {"many", "one", "other"},
	"es": {"many", "one", "other"},
	"ru": {"few", "many", "one", "other"},
}

func TestLocaleFilesMatchEnglish(t *testing.T) {
	en := messages(t, "en")
	if len(en) < 90 {
		t.Fatalf("English has %d messages; the file did not parse as expected", len(en))
	}
	for _, lang := range Supported {
		t.Run(lang, func(t *testing.T) {
			got := messages(t, lang)
			for id, want := range en {
				m, ok := got[id]
				if !ok {
					t.Errorf("%s missing", id)
					continue
				}
				if p, wantP := placeholders(m), placeholders(want); !slices.Equal(p, wantP) {
					t.Errorf("%s: placeholders %v, want %v", id, p, wantP)
				}
				if len(forms(want)) > 1 {
					if f := slices.Sorted(maps.Keys(forms(m))); !slices.Equal(f, pluralForms[lang]) {
						t.Errorf("%s: plural forms %v, want %v", id, f, pluralForms[lang])
					}
				}
			}
			for id := range got {
				if _, ok := en[id]; !ok {
					t.Errorf("%s is not in the English file", id)
				}
			}
		})
	}
}

func TestTFillsPlaceholders(t *testing.T) {
	c := newCatalog(t)
	en := messages(t, "en")
	data := map[string]any{}
	for _, m := range en {
		for _, name := range placeholders(m) {
			data[name] = "<" + name + ">"
		}
	}
	for _, lang := range Supported {
		t.Run(lang, func(t *testing.T) {
			l := c.For(lang)
			for id, m := range en {
				if len(forms(m)) > 1 {
					continue // plural: see TestN
				}
				got := l.T(id, data)
				if got == "" || got == id || strings.Contains(got, "{{") || strings.Contains(got, "<no value>") {
					t.Errorf("T(%q) = %q", id, got)
				}
				for _, name := range placeholders(m) {
					if !strings.Contains(got, "<"+name+">") {
						t.Errorf("T(%q) = %q, lacks %s", id, got, name)
					}
				}
			}
		})
	}
}

func TestT(t *testing.T) {
	c := newCatalog(t)
	tests := []struct {
		name, lang, id string
		data           []map[string]any
		want           string
	}{
		{"plain", "de", "form.register", nil, "Anmelden"},
		{"data", "fr", "err.too_long", []map[string]any{{"Max": 80}}, "80 caractères au maximum."},
		{"merged data", "ru", "manage.wants_mode", []map[string]any{{"Mode": "онлайн", "Position": 1}, {"Position": 3}},
			"Вы хотите участвовать онлайн: вы в листе ожидания (№ 3), а ваше текущее место сохраняется, пока не освободится новое."},
		{"unknown id", "it", "no.such.id", nil, "no.such.id"},
		{"unsupported language gets English", "pt-BR", "page.language", nil, "Language"},
		{"region ignored", "es-MX", "page.language", nil, "Idioma"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.For(tt.lang).T(tt.id, tt.data...); got != tt.want {
				t.Errorf("For(%q).T(%q) = %q, want %q", tt.lang, tt.id, got, tt.want)
			}
		})
	}
}

func TestTf(t *testing.T) {
	c := newCatalog(t)
	tests := []struct {
		name, lang, id string
		pairs          []any
		want           string
	}{
		{"no pairs", "de", "form.register", nil, "Anmelden"},
		{"a pair", "fr", "err.too_long", []any{"Max", 80}, "80 caractères au maximum."},
		{"later pair wins", "fr", "err.too_long", []any{"Max", 1, "Max", 80}, "80 caractères au maximum."},
		{"trailing name ignored", "fr", "err.too_long", []any{"Max", 80, "Extra"}, "80 caractères au maximum."},
		{"unknown id", "it", "no.such.id", []any{"Max", 80}, "no.such.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.For(tt.lang).Tf(tt.id, tt.pairs...); got != tt.want {
				t.Errorf("For(%q).Tf(%q, %v) = %q, want %q", tt.lang, tt.id, tt.pairs, got, tt.want)
			}
		})
	}
}

func TestTFallsBackToEnglish(t *testing.T) {
	bundle := goi18n.NewBundle(language.English)
	bundle.MustAddMessages(language.English, &goi18n.Message{ID: "only.en", Other: "Hello {{.Name}}"})
	bundle.MustAddMessages(language.French, &goi18n.Message{ID: "other", Other: "Autre"})
	l := (&Catalog{bundle: bundle}).For("fr")
	if got := l.T("only.en", map[string]any{"Name": "Ada"}); got != "Hello Ada" {
		t.Errorf("T(only.en) = %q, want the English text", got)
	}
	if got := l.N("only.en", 2, map[string]any{"Name": "Ada"}); got != "Hello Ada" {
		t.Errorf("N(only.en) = %q, want the English text", got)
	}
}

func TestN(t *testing.T) {
	c := newCatalog(t)
	tests := []struct {
		lang  string
		count int
		want  string
	}{
		{"ru", 1, "Осталось 1 место"},
		{"ru", 2, "Осталось 2 места"},
		{"ru", 5, "Осталось 5 мест"},
		{"ru", 11, "Осталось 11 мест"},
		{"ru", 21, "Осталось 21 место"},
		{"ru", 22, "Осталось 22 места"},
		{"en", 1, "1 seat left"},
		{"en", 0, "0 seats left"},
		{"fr", 0, "0 place restante"},
		{"fr", 2, "2 places restantes"},
		{"de", 1, "1 Platz frei"},
		{"es", 1000000, "Quedan 1000000 de plazas"},
	}
	for _, tt := range tests {
		t.Run(tt.lang+"/"+strconv.Itoa(tt.count), func(t *testing.T) {
			if got := c.For(tt.lang).N("form.seats_left", tt.count, nil); got != tt.want {
				t.Errorf("N(%d) = %q, want %q", tt.count, got, tt.want)
			}
		})
	}
	if got := c.For("ru").N("join.opens_in_minutes", 21, nil); got != "Встреча откроется через 21 минуту." {
		t.Errorf("ru opens_in_minutes(21) = %q", got)
	}
}

func TestNegotiate(t *testing.T) {
	event := []string{"de", "en", "it"}
	tests := []struct {
		name, query, stored, accept string
		allowed                     []string
		want                        string
	}{
		{"query wins", "it", "en", "de", event, "it"},
		{"query region and case", "IT-ch", "", "", event, "it"},
		{"query not allowed, stored", "fr", "en", "de", event, "en"},
		{"garbage query, stored", "<script>", "it", "", event, "it"},
		{"stored not allowed, header", "", "ru", "it-CH,it;q=0.9", event, "it"},
		{"header regional", "", "", "de-AT,de;q=0.9", nil, "de"},
		{"header ru-RU", "", "", "ru-RU", nil, "ru"},
		{"header by weight", "", "", "fr;q=0.2, es;q=0.8", nil, "es"},
		{"header skips not allowed", "", "", "fr-FR,fr;q=0.9,en;q=0.5", event, "en"},
		{"header with an unknown tag", "", "", "xx-YY, it;q=0.5", event, "it"},
		{"header q=0 refused", "", "", "de;q=0, it;q=0.1", event, "it"},
		{"header close language", "", "", "gsw", event, "de"},
		{"Ukrainian does not get Russian", "", "", "uk", []string{"es", "ru"}, "es"},
		{"fallback to first allowed", "", "", "ja", event, "de"},
		{"empty allowed means Supported", "", "", "", nil, "en"},
		{"unsupported allowed ignored", "", "", "", []string{"pt", "fr"}, "fr"},
		{"only unsupported allowed", "es", "", "", []string{"pt"}, "es"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Negotiate(tt.query, tt.stored, tt.accept, tt.allowed); got != tt.want {
				t.Errorf("Negotiate(%q, %q, %q, %v) = %q, want %q", tt.query, tt.stored, tt.accept, tt.allowed, got, tt.want)
			}
		})
	}
}

func TestDateTime(t *testing.T) {
	c := newCatalog(t)
	vienna := mustLoad(t, "Europe/Vienna")
	winter := time.Date(2020, 11, 9, 8, 0, 0, 0, time.UTC) // 09:00 in Vienna
	summer := time.Date(2021, 7, 1, 16, 30, 0, 0, time.UTC)
	tests := []struct {
		lang string
		at   time.Time
		loc  *time.Location
		want string
	}{
		{"en", winter, vienna, "Monday 9 November 2020, 09:00 CET"},
		{"de", winter, vienna, "Montag, 9. November 2020, 09:00 CET"},
		{"ru", winter, vienna, "понедельник, 9 ноября 2020, 09:00 CET"},
		{"fr", winter, vienna, "lundi 9 novembre 2020, 09:00 CET"},
		{"it", winter, vienna, "lunedì 9 novembre 2020, 09:00 CET"},
		{"es", winter, vienna, "lunes, 9 de noviembre de 2020, 09:00 CET"},
		{"ru", summer, vienna, "четверг, 1 июля 2021, 18:30 CEST"},
		{"fr", summer, vienna, "jeudi 1er juillet 2021, 18:30 CEST"},
		{"it", summer, vienna, "giovedì 1º luglio 2021, 18:30 CEST"},
		{"en", winter, nil, "Monday 9 November 2020, 08:00 UTC"},
		{"en", winter, mustLoad(t, "Asia/Bangkok"), "Monday 9 November 2020, 15:00 UTC+7"},
		{"en", winter, mustLoad(t, "Asia/Kathmandu"), "Monday 9 November 2020, 13:45 UTC+5:45"},
		{"de", winter, mustLoad(t, "America/Sao_Paulo"), "Montag, 9. November 2020, 05:00 UTC-3"},
	}
	for _, tt := range tests {
		t.Run(tt.lang+"/"+tt.want, func(t *testing.T) {
			if got := c.For(tt.lang).DateTime(tt.at, tt.loc); got != tt.want {
				t.Errorf("DateTime = %q, want %q", got, tt.want)
			}
		})
	}
	l := c.For("de")
	if got, want := l.Date(winter, vienna), "Montag, 9. November 2020"; got != want {
		t.Errorf("Date = %q, want %q", got, want)
	}
	if got, want := l.Time(winter, vienna), "09:00 CET"; got != want {
		t.Errorf("Time = %q, want %q", got, want)
	}
}

func TestZonesLoad(t *testing.T) {
	zones := Zones()
	if len(zones) < 100 {
		t.Errorf("Zones has %d names, want about 120", len(zones))
	}
	for _, must := range []string{"UTC", "Europe/Vienna", "Asia/Tokyo", "America/New_York", "Asia/Seoul",
		"Australia/Sydney", "Asia/Bangkok", "Africa/Nairobi"} {
		if !slices.Contains(zones, must) {
			t.Errorf("Zones lacks %s", must)
		}
	}
	if !slices.IsSorted(zones[1:]) || zones[0] != "UTC" {
		t.Errorf("Zones is not UTC then sorted names")
	}
	if len(slices.Compact(slices.Clone(zones))) != len(zones) {
		t.Errorf("Zones has duplicates")
	}
	for _, name := range zones {
		t.Run(name, func(t *testing.T) { mustLoad(t, name) })
	}
	zones[0] = "changed"
	if Zones()[0] != "UTC" {
		t.Errorf("Zones shares its slice with callers")
	}
}

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}
