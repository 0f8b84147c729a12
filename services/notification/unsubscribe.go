package notification

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/plenaryhq/plenary/pkg/i18n"
	"github.com/plenaryhq/plenary/pkg/links"
	"github.com/plenaryhq/plenary/pkg/store"
	"github.com/plenaryhq/plenary/pkg/web"
)

// unsubscribedCollection lists who unsubscribed from an event's
// announcements: one small document per event and address, inserted once
// (a repeat is a duplicate, which is fine). The address is kept only as a
// hash (addressKey); transactional emails never look here.
const unsubscribedCollection = "unsubscribed"

// Unsubscribe tokens are pkg/links tokens with a purpose of their own, over
// the registration id: a manage or join token is no unsubscribe token, nor
// the other way round.
const (
	unsubscribePurpose      = "unsubscribe"
	unsubscribeTokenVersion = 1
)

// unsubscribeLinks makes and checks the one-click unsubscribe links.
type unsubscribeLinks struct {
	signer *links.Signer
	public string
}

// newUnsubscribeLinks checks LINK_KEY and PUBLIC_URL.
func newUnsubscribeLinks(cfg Config) (*unsubscribeLinks, error) {
	if len(cfg.LinkKey) < links.MinKeyLen {
		return nil, errors.New("notification: LINK_KEY must be set to a secret of at least 32 bytes (the registration service's key will do)")
	}
	public := strings.TrimRight(strings.TrimSpace(cfg.PublicURL), "/")
	if public == "" {
		public = "http://localhost:8080" // PUBLIC_URL's default, for a Config not read from the environment
	}
	if !web.ValidURL(public) {
		return nil, fmt.Errorf("notification: PUBLIC_URL %q must be an absolute http:// or https:// URL", cfg.PublicURL)
	}
	signer, err := links.NewSigner([]byte(cfg.LinkKey))
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	return &unsubscribeLinks{signer: signer, public: public}, nil
}

// url is registration regID's link out of its event's announcements.
func (l *unsubscribeLinks) url(regID string) string {
	return l.public + "/u/" + l.signer.Token(unsubscribePurpose, regID, unsubscribeTokenVersion)
}

// parse returns the registration an unsubscribe token was made for.
func (l *unsubscribeLinks) parse(token string) (string, bool) {
	id, v, err := l.signer.Parse(unsubscribePurpose, token)
	return id, err == nil && v == unsubscribeTokenVersion
}

// addressKey stands for an address in the unsubscribed collection: the
// same for any case or surrounding spaces, and not the address itself.
func addressKey(addr string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(addr))))
	return hex.EncodeToString(sum[:16])
}

// unsubscribedRecord is one address out of one event's announcements.
type unsubscribedRecord struct {
	ID             string    `bson:"_id"` // <event id>:<address key>
	EventID        string    `bson:"event_id"`
	RegistrationID string    `bson:"registration_id"`
	At             time.Time `bson:"at"`
}

func unsubscribedID(eventID, addr string) string { return eventID + ":" + addressKey(addr) }

// unsubscribes is the unsubscribed collection.
type unsubscribes struct {
	coll   *mongo.Collection
	people *participants
}

func newUnsubscribes(db *mongo.Database, people *participants) *unsubscribes {
	return &unsubscribes{coll: db.Collection(unsubscribedCollection), people: people}
}

func (u *unsubscribes) ensureIndexes(ctx context.Context) error {
	return store.EnsureIndexes(ctx, u.coll.Database(),
		store.Index{Collection: unsubscribedCollection, Keys: bson.D{{Key: "event_id", Value: 1}}},
		store.Index{Collection: unsubscribedCollection, Keys: bson.D{{Key: "registration_id", Value: 1}}},
	)
}

// add unsubscribes addr from the event's announcements; once is enough.
func (u *unsubscribes) add(ctx context.Context, eventID, regID, addr string) error {
	rec := unsubscribedRecord{ID: unsubscribedID(eventID, addr), EventID: eventID, RegistrationID: regID, At: time.Now().UTC()}
	_, err := u.coll.InsertOne(ctx, rec)
	if err = store.Translate(err); err != nil && !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("unsubscribe registration[%s]: %w", regID, err)
	}
	return nil
}

// has reports whether addr unsubscribed from the event's announcements.
func (u *unsubscribes) has(ctx context.Context, eventID, addr string) (bool, error) {
	err := store.Translate(u.coll.FindOne(ctx, bson.D{{Key: "_id", Value: unsubscribedID(eventID, addr)}}).Err())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// of returns the address keys unsubscribed from the event's announcements.
func (u *unsubscribes) of(ctx context.Context, eventID string) (map[string]bool, error) {
	cur, err := u.coll.Find(ctx, bson.D{{Key: "event_id", Value: eventID}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("unsubscribed of event[%s]: %w", eventID, err)
	}
	var recs []unsubscribedRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("unsubscribed of event[%s]: %w", eventID, err)
	}
	out := make(map[string]bool, len(recs))
	for _, r := range recs {
		out[strings.TrimPrefix(r.ID, eventID+":")] = true
	}
	return out, nil
}

// forgetUnsubscribed deletes what a registration's unsubscribing left, for
// its erasure: even hashed, an address is not to be kept.
func forgetUnsubscribed(ctx context.Context, db *mongo.Database, regID string) error {
	_, err := db.Collection(unsubscribedCollection).DeleteMany(ctx, bson.D{{Key: "registration_id", Value: regID}})
	if err != nil {
		return fmt.Errorf("forget unsubscribes of registration[%s]: %w", regID, err)
	}
	return nil
}

// registration returns the newest version of a registration in the
// participants replica; false when there is none or it was erased.
func (u *unsubscribes) registration(ctx context.Context, regID string) (participant, bool, error) {
	if gone, err := u.people.erasedAmong(ctx, []string{regID}); err != nil || gone[regID] {
		return participant{}, false, err
	}
	cur, err := u.people.coll.Find(ctx, bson.D{{Key: "registration_id", Value: regID}})
	if err != nil {
		return participant{}, false, fmt.Errorf("registration[%s]: %w", regID, err)
	}
	var versions []participant
	if err := cur.All(ctx, &versions); err != nil {
		return participant{}, false, fmt.Errorf("registration[%s]: %w", regID, err)
	}
	var newest participant
	for _, v := range versions {
		if v.Erased {
			return participant{}, false, nil
		}
		if v.Version > newest.Version {
			newest = v
		}
	}
	return newest, newest.RegistrationID != "", nil
}

// unsubscribePage answers GET /u/{token}: a page with a button. A GET never
// unsubscribes: mail scanners and link previews fetch links unasked.
func (a *api) unsubscribePage(c *fiber.Ctx) error {
	p, ok, err := a.tokenHolder(c)
	if err != nil || !ok {
		return err
	}
	t := a.unsubscribeTexts(c, p.Locale)
	if p.RegistrationID == "" {
		return unsubscribeAnswer(c, http.StatusOK, t, "", t.Gone)
	}
	done, err := a.unsub.has(c.UserContext(), p.EventID, p.Email)
	if err != nil {
		return err
	}
	if done {
		return unsubscribeAnswer(c, http.StatusOK, t, "", t.done(a.eventTitle(c.UserContext(), p.EventID)))
	}
	return unsubscribeAnswer(c, http.StatusOK, t, t.question(a.eventTitle(c.UserContext(), p.EventID)), "")
}

// unsubscribe answers POST /u/{token}, RFC 8058's one-click POST (body
// List-Unsubscribe=One-Click) or the page's form: the address gets no more
// of this event's announcements. Repeating it is harmless.
func (a *api) unsubscribe(c *fiber.Ctx) error {
	p, ok, err := a.tokenHolder(c)
	if err != nil || !ok {
		return err
	}
	t := a.unsubscribeTexts(c, p.Locale)
	if p.RegistrationID == "" { // erased: it gets nothing anyway
		return unsubscribeAnswer(c, http.StatusOK, t, "", t.Gone)
	}
	if err := a.unsub.add(c.UserContext(), p.EventID, p.RegistrationID, p.Email); err != nil {
		return err
	}
	a.log.Info("unsubscribed from announcements", "event_id", p.EventID, "registration_id", p.RegistrationID)
	return unsubscribeAnswer(c, http.StatusOK, t, "", t.done(a.eventTitle(c.UserContext(), p.EventID)))
}

// eventTitle is the event's title from the events replica ("" if unknown).
func (a *api) eventTitle(ctx context.Context, eventID string) string {
	ev, err := a.n.eventOf(ctx, eventID)
	if err != nil {
		return ""
	}
	return ev.Title
}

// tokenHolder checks the token of /u/{token} and finds its registration
// (empty if erased since). A token that is not valid is answered 404 here,
// and never logged.
func (a *api) tokenHolder(c *fiber.Ctx) (participant, bool, error) {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Robots-Tag", "noindex")
	regID, ok := a.links.parse(c.Params("token"))
	if !ok {
		t := a.unsubscribeTexts(c, "")
		return participant{}, false, unsubscribeAnswer(c, http.StatusNotFound, t, "", t.Invalid)
	}
	p, _, err := a.unsub.registration(c.UserContext(), regID)
	return p, true, err
}

// unsubscribeText is the unsubscribe page in one language, from the shared
// catalogs (pkg/i18n, [unsubscribe]).
type unsubscribeText struct {
	Lang, Title, Button, Gone, Note, Invalid string
	l                                        *i18n.Localizer
}

// question asks whether to stop the announcements of event; done says
// they are stopped.
func (t unsubscribeText) question(event string) string {
	return t.l.Tf("unsubscribe.question", "Event", event)
}

func (t unsubscribeText) done(event string) string { return t.l.Tf("unsubscribe.done", "Event", event) }

// unsubscribeTexts picks the participant's language, else the browser's,
// else English.
func (a *api) unsubscribeTexts(c *fiber.Ctx, locale string) unsubscribeText {
	l := a.n.tmpl.langs[i18n.Negotiate("", locale, c.Get(fiber.HeaderAcceptLanguage), nil)]
	return unsubscribeText{
		Lang: l.Lang(), Title: l.T("unsubscribe.title"), Button: l.T("unsubscribe.button"),
		Gone: l.T("unsubscribe.gone"), Note: l.T("unsubscribe.note"), Invalid: l.T("unsubscribe.invalid"), l: l,
	}
}

var unsubscribeHTML = template.Must(template.New("u").Parse(`<!doctype html>
<html lang="{{.T.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.T.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}button{font:inherit;padding:.5rem 1.2rem}</style>
</head><body><main><h1>{{.T.Title}}</h1>
{{if .Question}}<p>{{.Question}}</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">{{.T.Button}}</button></form>
{{else}}<p>{{.Message}}</p>{{end}}
{{if ne .Message .T.Invalid}}<p>{{.T.Note}}</p>{{end}}
</main></body></html>
`))

// unsubscribeAnswer writes the page: the question with its button, or a
// message. The form posts to the page's own address.
func unsubscribeAnswer(c *fiber.Ctx, status int, t unsubscribeText, question, message string) error {
	var b bytes.Buffer
	data := struct {
		T                 unsubscribeText
		Question, Message string
	}{t, question, message}
	if err := unsubscribeHTML.Execute(&b, data); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Status(status).Send(b.Bytes())
}
