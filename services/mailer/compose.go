package mailer

import (
	"bytes"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/wneessen/go-mail"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

// compose renders job as a message. Its errors are bus.Permanent: a job that
// cannot be composed now never can.
func compose(from string, job events.MailJob) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(from); err != nil {
		return nil, bus.Permanent(fmt.Errorf("SMTP_FROM: %w", err))
	}
	// net/mail quotes and encodes the display name, whatever it holds (a
	// quote, a backslash, non-ASCII): a name must never cost an email.
	to, err := netmail.ParseAddress(job.To)
	if err != nil || to.Address != job.To {
		return nil, bus.Permanent(errors.New("recipient: not a plain email address"))
	}
	to.Name = job.ToName
	msg.ToMailAddress(to)
	msg.Subject(job.Subject)
	// A stable Message-ID lets receiving systems drop a duplicate too.
	msg.SetMessageIDWithValue(job.ID + "@plenary")
	for name, value := range job.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, bus.Permanent(err)
		}
		msg.SetGenHeader(mail.Header(textproto.CanonicalMIMEHeaderKey(name)), value)
	}
	msg.SetBodyString(mail.TypeTextPlain, job.Text)
	if job.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, job.HTML)
	}
	for _, a := range job.Attachments {
		if err := msg.AttachReader(a.Name, bytes.NewReader(a.Data), mail.WithFileContentType(mail.ContentType(a.ContentType))); err != nil {
			return nil, bus.Permanent(fmt.Errorf("attachment %s: %w", a.Name, err))
		}
	}
	return msg, nil
}

var headerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)

// ownHeaders are written by the mailer from the job's own fields; a job's
// extra headers cannot replace them.
var ownHeaders = map[string]bool{
	"From": true, "Sender": true, "To": true, "Cc": true, "Bcc": true, "Subject": true, "Date": true,
	"Message-Id": true, "Mime-Version": true, "Return-Path": true,
}

// checkHeader refuses an extra header that could break out of its line or
// replace one the mailer writes. A job carrying one is refused whole rather
// than sent without it: an announcement must not go out without its
// unsubscribe headers.
func checkHeader(name, value string) error {
	canonical := textproto.CanonicalMIMEHeaderKey(name)
	switch {
	case !headerName.MatchString(name):
		return errors.New("header: name must be letters, digits and hyphens")
	case ownHeaders[canonical] || strings.HasPrefix(canonical, "Content-"):
		return fmt.Errorf("header %s: set by the mailer", canonical)
	case strings.ContainsAny(value, "\r\n\x00"):
		return fmt.Errorf("header %s: line break in the value", canonical)
	case len(value) > 900:
		return fmt.Errorf("header %s: value longer than 900 bytes", canonical)
	}
	return nil
}

var addressRE = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// redact replaces email addresses in s: SMTP replies quote the recipient,
// and logs, statuses and dead letters must not.
func redact(s string) string {
	return addressRE.ReplaceAllString(s, "<address>")
}
