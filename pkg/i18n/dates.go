package i18n

import (
	"fmt"
	"time"
)

// calendar holds a language's day and month names; Go's time.Format knows
// English only.
type calendar struct {
	weekdays [7]string  // Sunday first, as time.Weekday counts
	months   [12]string // in the form a date uses: genitive in Russian
	// date lays out a weekday, day of month, month and year.
	date func(weekday string, day int, month string, year int) string
}

var calendars = map[string]*calendar{
	"en": {
		weekdays: [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"},
		months: [12]string{"January", "February", "March", "April", "May", "June",
			"July", "August", "September", "October", "November", "December"},
		// Monday 9 November 2020
		date: func(weekday string, day int, month string, year int) string {
			return fmt.Sprintf("%s %d %s %d", weekday, day, month, year)
		},
	},
	"fr": {
		weekdays: [7]string{"dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"},
		months: [12]string{"janvier", "février", "mars", "avril", "mai", "juin",
			"juillet", "août", "septembre", "octobre", "novembre", "décembre"},
		// lundi 9 novembre 2020, but 1er novembre
		date: func(weekday string, day int, month string, year int) string {
			if day == 1 {
				return fmt.Sprintf("%s 1er %s %d", weekday, month, year)
			}
			return fmt.Sprintf("%s %d %s %d", weekday, day, month, year)
		},
	},
	"de": {
		weekdays: [7]string{"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"},
		months: [12]string{"Januar", "Februar", "März", "April", "Mai", "Juni",
			"Juli", "August", "September", "Oktober", "November", "Dezember"},
		// Montag, 9. November 2020
		date: func(weekday string, day int, month string, year int) string {
			return fmt.Sprintf("%s, %d. %s %d", weekday, day, month, year)
		},
	},
	"it": {
		weekdays: [7]string{"domenica", "lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato"},
		months: [12]string{"gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno",
			"luglio", "agosto", "settembre", "ottobre", "novembre", "dicembre"},
		// lunedì 9 novembre 2020, but 1º novembre
		date: func(weekday string, day int, month string, year int) string {
			if day == 1 {
				return fmt.Sprintf("%s 1º %s %d", weekday, month, year)
			}
			return fmt.Sprintf("%s %d %s %d", weekday, day, month, year)
		},
	},
	"ru": {
		weekdays: [7]string{"воскресенье", "понедельник", "вторник", "среда", "четверг", "пятница", "суббота"},
		months: [12]string{"января", "февраля", "марта", "апреля", "мая", "июня",
			"июля", "августа", "сентября", "октября", "ноября", "декабря"},
		// понедельник, 9 ноября 2020
		date: func(weekday string, day int, month string, year int) string {
			return fmt.Sprintf("%s, %d %s %d", weekday, day, month, year)
		},
	},
	"es": {
		weekdays: [7]string{"domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"},
		months: [12]string{"enero", "febrero", "marzo", "abril", "mayo", "junio",
			"julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"},
		// lunes, 9 de noviembre de 2020
		date: func(weekday string, day int, month string, year int) string {
			return fmt.Sprintf("%s, %d de %s de %d", weekday, day, month, year)
		},
	},
}

// DateTime formats t in loc as a full date, time and zone, e.g.
// "Monday 9 November 2020, 09:00 CET" or "понедельник, 9 ноября 2020, 09:00 CET".
// A nil loc keeps t's own location.
func (l *Localizer) DateTime(t time.Time, loc *time.Location) string {
	return l.Date(t, loc) + ", " + l.Time(t, loc)
}

// Date formats t's day in loc, e.g. "Montag, 9. November 2020". A nil loc
// keeps t's own location.
func (l *Localizer) Date(t time.Time, loc *time.Location) string {
	if loc != nil {
		t = t.In(loc)
	}
	c := calendars[l.lang]
	if c == nil {
		c = calendars["en"]
	}
	return c.date(c.weekdays[t.Weekday()], t.Day(), c.months[t.Month()-1], t.Year())
}

// Time formats t's clock time in loc on 24 hours with its zone, e.g.
// "09:00 CET", or "09:00 UTC+7" where the zone has no abbreviation. A nil loc
// keeps t's own location.
func (l *Localizer) Time(t time.Time, loc *time.Location) string {
	if loc != nil {
		t = t.In(loc)
	}
	return t.Format("15:04") + " " + zoneName(t)
}

// zoneName returns t's zone abbreviation, or its UTC offset such as "UTC+7"
// or "UTC-3:30" for the many zones whose abbreviation Go gives as "+07".
func zoneName(t time.Time) string {
	name, offset := t.Zone()
	if name != "" && name[0] != '+' && name[0] != '-' {
		return name
	}
	if offset == 0 {
		return "UTC"
	}
	sign := "+"
	if offset < 0 {
		sign, offset = "-", -offset
	}
	h, m := offset/3600, offset%3600/60
	if m == 0 {
		return fmt.Sprintf("UTC%s%d", sign, h)
	}
	return fmt.Sprintf("UTC%s%d:%02d", sign, h, m)
}
