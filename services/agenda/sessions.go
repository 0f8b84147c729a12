package agenda

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/events"
	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/web"
)

// Limits on what organisers may put in an agenda.
const (
	maxTitle       = 200
	maxAbstract    = 4000
	maxRoom        = 200
	maxTrack       = 100
	maxSpeakers    = 30
	maxSpeakerText = 200
	maxURL         = 2000
	maxSessions    = 500
	maxNote        = 1000
)

// sessionFields is a session as organisers write it: the body of POST and,
// after a merge patch onto the session, of PATCH. Times are strings so that
// a bad one is reported against its field.
type sessionFields struct {
	Title    string           `json:"title"`
	Abstract string           `json:"abstract"`
	StartsAt string           `json:"starts_at"`
	EndsAt   string           `json:"ends_at"`
	Room     string           `json:"room"`
	Track    string           `json:"track"`
	Format   string           `json:"format"`
	Speakers []events.Speaker `json:"speakers"`
	JoinURL  string           `json:"join_url"`
}

func fieldsOf(s events.Session) sessionFields {
	return sessionFields{
		Title: s.Title, Abstract: s.Abstract, Room: s.Room, Track: s.Track, Format: s.Format,
		StartsAt: s.StartsAt.Format(time.RFC3339), EndsAt: s.EndsAt.Format(time.RFC3339),
		Speakers: s.Speakers, JoinURL: s.JoinURL,
	}
}

// decodeFields reads a session body strictly: an unknown field (a typo such
// as "titel") is an error naming it rather than a silently ignored change.
func decodeFields(body []byte) (sessionFields, error) {
	var f sessionFields
	return f, decodeStrict(body, &f)
}

// decodeStrict decodes one JSON object into v: unknown fields and anything
// after the object are errors.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return web.BadRequest("the body must be one JSON object and nothing after it")
	}
	return nil
}

// jsonProblem turns a decoding error into a problem naming the field.
func jsonProblem(err error) error {
	var v web.Validation
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		v.Add(typeErr.Field, "must be a %s", typeErr.Type.Kind())
	case errors.As(err, &typeErr):
		return web.BadRequest("the body must be a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		v.Add(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	default:
		return web.BadRequest("the body is not valid JSON: " + err.Error())
	}
	return v.Err()
}

// mergePatch applies an RFC 7396 JSON merge patch to doc: members of the
// patch replace those of doc, null removes them, objects merge recursively
// and anything else (arrays included) replaces whole.
func mergePatch(doc, patch []byte) ([]byte, error) {
	var p any
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, web.BadRequest("the body is not valid JSON: " + err.Error())
	}
	if _, ok := p.(map[string]any); !ok {
		return nil, web.BadRequest("a merge patch must be a JSON object")
	}
	var d any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	return json.Marshal(merge(d, p))
}

func merge(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = merge(d[k], v)
		}
	}
	return d
}

// session validates f as a session of ev with id. Times are kept to the
// second, in UTC; a missing format means hybrid, the common case at a
// hybrid conference. An edit of prev that leaves its times alone is not
// held to the event's dates (they may have changed since: the session is
// flagged, and can still be edited).
func (f sessionFields) session(ev *events.Event, id string, prev *events.Session) (events.Session, error) {
	var v web.Validation
	s := events.Session{
		ID: id, Title: strings.TrimSpace(f.Title), Abstract: strings.TrimSpace(f.Abstract),
		Room: strings.TrimSpace(f.Room), Track: strings.TrimSpace(f.Track),
		Format: f.Format, JoinURL: strings.TrimSpace(f.JoinURL),
	}
	v.Text("title", f.Title, maxTitle, true)
	v.Text("abstract", f.Abstract, maxAbstract, false)
	v.Text("room", f.Room, maxRoom, false)
	v.Text("track", f.Track, maxTrack, false)
	if s.Format == "" {
		s.Format = events.FormatHybrid
	} else if !slices.Contains(events.Formats, s.Format) {
		v.Add("format", "must be one of %s", strings.Join(events.Formats, ", "))
	}
	if s.JoinURL != "" && (len(s.JoinURL) > maxURL || !web.ValidURL(s.JoinURL)) {
		v.Add("join_url", "must be an http or https URL of at most %d characters", maxURL)
	}
	if len(f.Speakers) > maxSpeakers {
		v.Add("speakers", "at most %d speakers", maxSpeakers)
	}
	for i, sp := range f.Speakers {
		field := fmt.Sprintf("speakers[%d]", i)
		v.Text(field+".name", sp.Name, maxSpeakerText, true)
		v.Text(field+".affiliation", sp.Affiliation, maxSpeakerText, false)
		s.Speakers = append(s.Speakers, events.Speaker{Name: strings.TrimSpace(sp.Name), Affiliation: strings.TrimSpace(sp.Affiliation)})
	}
	s.StartsAt = parseTime(&v, "starts_at", f.StartsAt)
	s.EndsAt = parseTime(&v, "ends_at", f.EndsAt)
	if !s.StartsAt.IsZero() && !s.EndsAt.IsZero() {
		if !s.EndsAt.After(s.StartsAt) {
			v.Add("ends_at", "must be after starts_at")
		} else if from, until, loc := eventDays(ev); (prev == nil || !prev.StartsAt.Equal(s.StartsAt) || !prev.EndsAt.Equal(s.EndsAt)) &&
			(s.StartsAt.Before(from) || s.EndsAt.After(until)) {
			v.Add("starts_at", "the session must fall within the event's dates, %s to %s (%s)",
				from.In(loc).Format("2 January 2006"), until.Add(-time.Second).In(loc).Format("2 January 2006"), loc)
		}
	}
	return s, v.Err()
}

func parseTime(v *web.Validation, field, s string) time.Time {
	if s == "" {
		v.Add(field, "required")
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		v.Add(field, "must be an RFC 3339 time with an offset, e.g. 2027-11-09T10:00:00+01:00")
		return time.Time{}
	}
	return t.Truncate(time.Second).UTC()
}

// eventDays is the span sessions must fall in: from the start of the
// event's first day to the end of its last, in the event's zone.
func eventDays(ev *events.Event) (from, until time.Time, loc *time.Location) {
	loc = i18n.ZoneOrUTC(ev.Timezone)
	start, end := ev.StartsAt.In(loc), ev.EndsAt.In(loc)
	from = time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, loc)
	until = time.Date(end.Year(), end.Month(), end.Day()+1, 0, 0, 0, 0, loc)
	return from, until, loc
}

// Warning is something an organiser should look at that does not stop an
// edit or a release: two sessions in one room at once, a speaker in two
// places, a session no longer within the event's dates.
type Warning struct {
	Code     string   `json:"code"`
	Sessions []string `json:"sessions"`
	Message  string   `json:"message"`
}

// maxWarnings bounds the warnings listed: an agenda of placeholders (every
// session at 09:00 in the main hall) would otherwise list every pair.
const maxWarnings = 200

// Warning codes.
const (
	warnRoom    = "room_conflict"
	warnSpeaker = "speaker_conflict"
	warnOutside = "outside_event"
)

// check lists the warnings about sessions of ev.
func check(ev *events.Event, sessions []events.Session) []Warning {
	var out []Warning
	from, until, _ := eventDays(ev)
	for _, s := range sessions {
		if s.StartsAt.Before(from) || s.EndsAt.After(until) {
			out = append(out, Warning{Code: warnOutside, Sessions: []string{s.ID},
				Message: fmt.Sprintf("%q is no longer within the event's dates", s.Title)})
		}
	}
	for i, a := range sessions {
		for _, b := range sessions[i+1:] {
			if len(out) >= maxWarnings {
				return out
			}
			if !a.StartsAt.Before(b.EndsAt) || !b.StartsAt.Before(a.EndsAt) {
				continue
			}
			if a.Room != "" && sameName(a.Room, b.Room) {
				out = append(out, Warning{Code: warnRoom, Sessions: []string{a.ID, b.ID},
					Message: fmt.Sprintf("%q and %q are both in %s at the same time", a.Title, b.Title, a.Room)})
			}
			for _, sp := range a.Speakers {
				if slices.ContainsFunc(b.Speakers, func(o events.Speaker) bool { return sameName(sp.Name, o.Name) }) {
					out = append(out, Warning{Code: warnSpeaker, Sessions: []string{a.ID, b.ID},
						Message: fmt.Sprintf("%s speaks in %q and %q at the same time", sp.Name, a.Title, b.Title)})
				}
			}
		}
	}
	return out
}

// sameName compares names as people read them: case and spacing aside.
func sameName(a, b string) bool {
	return strings.EqualFold(strings.Join(strings.Fields(a), " "), strings.Join(strings.Fields(b), " "))
}

// flagged marks each session with the codes of the warnings about it.
type flagged struct {
	events.Session
	Flags []string `json:"flags,omitempty"`
}

func flag(sessions []events.Session, warnings []Warning) []flagged {
	codes := map[string][]string{}
	for _, w := range warnings {
		for _, id := range w.Sessions {
			if !slices.Contains(codes[id], w.Code) {
				codes[id] = append(codes[id], w.Code)
			}
		}
	}
	out := make([]flagged, len(sessions))
	for i, s := range sessions {
		out[i] = flagged{Session: s, Flags: codes[s.ID]}
	}
	return out
}
