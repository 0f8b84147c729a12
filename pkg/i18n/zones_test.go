package i18n

import (
	"strings"
	"testing"
	"time"
)

func TestLoadZone(t *testing.T) {
	for _, name := range []string{"UTC", "Europe/Vienna", "America/Argentina/Buenos_Aires",
		"America/Port-au-Prince", "Etc/GMT+5", "Etc/GMT-14", "EST5EDT", "Asia/Calcutta"} {
		t.Run(name, func(t *testing.T) {
			loc, err := LoadZone(name)
			if err != nil {
				t.Fatalf("LoadZone(%q): %v", name, err)
			}
			if loc.String() != name {
				t.Errorf("LoadZone(%q) = %s", name, loc)
			}
			if again, _ := LoadZone(name); again != loc {
				t.Errorf("LoadZone(%q) loaded it again instead of using the cache", name)
			}
		})
	}
	refused := []string{
		"", "Local", "local", "Nowhere/City",
		"/etc/localtime", "../../etc/passwd", "Europe/../Europe/Vienna", `Europe\Vienna`,
		"Europe//Vienna", "Europe/Vienna/", " Europe/Vienna", "Europe/Vienna\n", "Europe/Wien\x00",
		"Europe/" + strings.Repeat("A", 60),
	}
	for _, name := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if loc, err := LoadZone(name); err == nil {
				t.Fatalf("LoadZone(%q) = %s, want an error", name, loc)
			}
			if _, cached := loaded.Load(name); cached {
				t.Errorf("LoadZone(%q) cached a name that did not load", name)
			}
		})
	}
}

func TestZoneOrUTC(t *testing.T) {
	if got := ZoneOrUTC("Asia/Tokyo"); got.String() != "Asia/Tokyo" {
		t.Errorf("ZoneOrUTC(Asia/Tokyo) = %s", got)
	}
	for _, name := range []string{"", "Local", "Mars/Olympus", "../etc/passwd"} {
		if got := ZoneOrUTC(name); got != time.UTC {
			t.Errorf("ZoneOrUTC(%q) = %s, want UTC", name, got)
		}
	}
}
