package i18n

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// zones is the curated list behind Zones: UTC, then the zones of major cities,
// sorted by name. Only canonical names, not links or deprecated ones such as
// Asia/Calcutta or Europe/Kiev, so that a stored choice stays canonical.
var zones = []string{
	"UTC",

	"Africa/Abidjan", "Africa/Accra", "Africa/Addis_Ababa", "Africa/Algiers",
	"Africa/Cairo", "Africa/Casablanca", "Africa/Dakar", "Africa/Dar_es_Salaam",
	"Africa/Johannesburg", "Africa/Kampala", "Africa/Khartoum", "Africa/Kinshasa",
	"Africa/Lagos", "Africa/Luanda", "Africa/Maputo", "Africa/Nairobi",
	"Africa/Tunis", "Africa/Windhoek",

	"America/Anchorage", "America/Argentina/Buenos_Aires", "America/Asuncion",
	"America/Bogota", "America/Caracas", "America/Chicago", "America/Costa_Rica",
	"America/Denver", "America/Edmonton", "America/Guatemala", "America/Guayaquil",
	"America/Halifax", "America/Havana", "America/La_Paz", "America/Lima",
	"America/Los_Angeles", "America/Mexico_City", "America/Montevideo",
	"America/New_York", "America/Panama", "America/Phoenix", "America/Puerto_Rico",
	"America/Santiago", "America/Santo_Domingo", "America/Sao_Paulo",
	"America/St_Johns", "America/Toronto", "America/Vancouver", "America/Winnipeg",

	"Asia/Almaty", "Asia/Amman", "Asia/Baghdad", "Asia/Baku", "Asia/Bangkok",
	"Asia/Beirut", "Asia/Colombo", "Asia/Dhaka", "Asia/Dubai", "Asia/Ho_Chi_Minh",
	"Asia/Hong_Kong", "Asia/Irkutsk", "Asia/Jakarta", "Asia/Jerusalem",
	"Asia/Kabul", "Asia/Kamchatka", "Asia/Karachi", "Asia/Kathmandu",
	"Asia/Kolkata", "Asia/Krasnoyarsk", "Asia/Kuala_Lumpur", "Asia/Manila",
	"Asia/Novosibirsk", "Asia/Omsk", "Asia/Qatar", "Asia/Riyadh", "Asia/Seoul",
	"Asia/Shanghai", "Asia/Singapore", "Asia/Taipei", "Asia/Tashkent",
	"Asia/Tbilisi", "Asia/Tehran", "Asia/Tokyo", "Asia/Vladivostok",
	"Asia/Yakutsk", "Asia/Yangon", "Asia/Yekaterinburg", "Asia/Yerevan",

	"Atlantic/Azores", "Atlantic/Canary", "Atlantic/Cape_Verde", "Atlantic/Reykjavik",

	"Australia/Adelaide", "Australia/Brisbane", "Australia/Darwin",
	"Australia/Hobart", "Australia/Melbourne", "Australia/Perth", "Australia/Sydney",

	"Europe/Amsterdam", "Europe/Athens", "Europe/Belgrade", "Europe/Berlin",
	"Europe/Brussels", "Europe/Bucharest", "Europe/Budapest", "Europe/Chisinau",
	"Europe/Copenhagen", "Europe/Dublin", "Europe/Helsinki", "Europe/Istanbul",
	"Europe/Kaliningrad", "Europe/Kyiv", "Europe/Lisbon", "Europe/London",
	"Europe/Luxembourg", "Europe/Madrid", "Europe/Minsk", "Europe/Moscow",
	"Europe/Oslo", "Europe/Paris", "Europe/Prague", "Europe/Riga", "Europe/Rome",
	"Europe/Samara", "Europe/Sofia", "Europe/Stockholm", "Europe/Tallinn",
	"Europe/Vienna", "Europe/Vilnius", "Europe/Warsaw", "Europe/Zagreb",
	"Europe/Zurich",

	"Indian/Maldives", "Indian/Mauritius",

	"Pacific/Auckland", "Pacific/Fiji", "Pacific/Guam", "Pacific/Honolulu",
	"Pacific/Port_Moresby", "Pacific/Tongatapu",
}

// Zones returns the IANA time zone names offered in a time zone select: UTC,
// then the major cities of each continent, sorted. The caller owns the slice.
func Zones() []string { return slices.Clone(zones) }

// maxZoneName bounds a zone name from a form or query; the longest in the
// IANA database is about half as long.
const maxZoneName = 64

// loaded caches LoadZone: time.LoadLocation parses the zone's data on every
// call, and pages look up a zone or two on every request. Only names that
// load are stored, so the cache holds at most the IANA database.
var loaded sync.Map // name → *time.Location

// LoadZone loads an IANA time zone such as "Europe/Vienna", cached. Names
// often come from a form or a query, so it refuses "" and "Local" (both mean
// something other than a zone: UTC and the server's own), names over 64
// bytes, and anything not spelt like an IANA name (letters, digits, '_',
// '-', '+', and '/' between parts), such as a path.
func LoadZone(name string) (*time.Location, error) {
	if loc, ok := loaded.Load(name); ok {
		return loc.(*time.Location), nil
	}
	if !ianaName(name) {
		return nil, fmt.Errorf("i18n: %q is not a time zone name", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("i18n: time zone %q: %w", name, err)
	}
	loaded.Store(name, loc)
	return loc, nil
}

// ianaName reports whether name is spelt like an IANA zone name: parts
// that start with a letter, made of letters, digits, '_', '-' and '+',
// joined by '/'.
func ianaName(name string) bool {
	if name == "Local" || len(name) > maxZoneName {
		return false
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == "" || !isLetter(part[0]) {
			return false
		}
		for i := range len(part) {
			c := part[i]
			if !isLetter(c) && !('0' <= c && c <= '9') && c != '_' && c != '-' && c != '+' {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// ZoneOrUTC is LoadZone for showing times: a zone that does not load reads
// as UTC rather than costing the page or the email.
func ZoneOrUTC(name string) *time.Location {
	if loc, err := LoadZone(name); err == nil {
		return loc
	}
	return time.UTC
}
