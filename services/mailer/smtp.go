package mailer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
	"golang.org/x/time/rate"

	"github.com/plenaryhq/plenary/pkg/bus"
	"github.com/plenaryhq/plenary/pkg/events"
)

// pool sends emails over at most size SMTP connections. Each connection
// belongs to one worker goroutine, which keeps it open between messages and
// redials it (never opens a second one) only when it was lost.
//
// A worker hands the server everything of a message but the final "." and
// only then takes a slot in the ledger's window: the "." is the moment the
// server commits to delivering, and the window holds at most
// MAILER_MAX_UNRECORDED emails (one per connection by default) sent and not
// yet recorded. So the records of the previous emails are written while the
// next ones are transferred, and a crash at any instant leaves at most that
// many emails that a redelivery would send again.
type pool struct {
	dialer       *mail.Client // dials with the configured TLS policy, auth and HELO
	from         string
	envelopeFrom string
	timeout      time.Duration
	limit        *rate.Limiter
	ledger       *ledger
	m            *metrics

	tasks      chan *task
	submitting sync.Mutex
	wg         sync.WaitGroup
	stop       context.CancelFunc
}

// task is one email for a worker. done receives its outcome exactly once:
// from the worker when it was not sent, from the ledger once it is recorded
// when it was.
type task struct {
	index int
	job   events.MailJob
	// held reports whether this process still holds the job's message
	// (see mailer.lease); a worker checks it right before the "."
	held func() bool
	done chan<- outcome
}

// outcome is what became of a task.
type outcome struct {
	index  int
	sent   bool
	sentAt time.Time
	// recordErr is set when the email went out but the ledger could not
	// record it.
	recordErr error
	// err says why the email was not sent; bus.Permanent when retrying
	// cannot help.
	err error
}

func newDialer(cfg SMTPConfig) (*mail.Client, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mailer: SMTP_ADDR %q: want host:port", cfg.Addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("mailer: SMTP_ADDR %q: bad port", cfg.Addr)
	}
	opts := []mail.Option{mail.WithPort(port), mail.WithTimeout(cfg.Timeout), mail.WithHELO("plenary")}
	switch cfg.TLS {
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case "opportunistic":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case "starttls":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case "implicit":
		opts = append(opts, mail.WithSSL())
	default:
		return nil, fmt.Errorf("mailer: SMTP_TLS %q: want none, opportunistic, starttls or implicit", cfg.TLS)
	}
	if cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password))
	}
	c, err := mail.NewClient(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mailer: smtp client: %w", err)
	}
	return c, nil
}

// newPool starts size workers. perSecond > 0 caps the emails handed to the
// server per second, all connections together.
func newPool(cfg SMTPConfig, size int, perSecond float64, l *ledger, m *metrics) (*pool, error) {
	dialer, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	envelopeFrom, err := envelopeAddress(cfg.From)
	if err != nil {
		return nil, err
	}
	limit := rate.NewLimiter(rate.Inf, 1)
	if perSecond > 0 {
		// A burst of one email per connection: a connection held up for a
		// moment catches up, so the rate holds over time, and no more than
		// size emails ever go out at once.
		limit = rate.NewLimiter(rate.Limit(perSecond), size)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &pool{
		dialer: dialer, from: cfg.From, envelopeFrom: envelopeFrom, timeout: cfg.Timeout, limit: limit,
		ledger: l, m: m, tasks: make(chan *task), stop: stop,
	}
	for range size {
		p.wg.Add(1)
		go p.work(ctx)
	}
	return p, nil
}

// submit queues ts for the idle workers, in order. A batch's tasks are not
// interleaved with another's: the first batch taken finishes first, and is
// settled while the connections work on the next.
func (p *pool) submit(ts []*task) {
	p.submitting.Lock()
	defer p.submitting.Unlock()
	for _, t := range ts {
		p.tasks <- t
	}
}

// close lets the workers finish what they were given, then closes their
// connections (QUIT).
func (p *pool) close() {
	close(p.tasks)
	p.wg.Wait()
	p.stop()
}

func (p *pool) work(ctx context.Context) {
	defer p.wg.Done()
	var c *smtp.Client
	defer func() {
		if c != nil {
			_ = p.dialer.CloseWithSMTPClient(c)
			p.m.connsOpen.Dec()
		}
	}()
	for t := range p.tasks {
		c = p.send(ctx, c, t)
	}
}

// send delivers t over c (dialling first when c is nil) and returns the
// connection to use next, nil when it was lost.
func (p *pool) send(ctx context.Context, c *smtp.Client, t *task) *smtp.Client {
	if strings.ContainsAny(t.job.To, "\r\n") {
		// A line break would end RCPT TO early and start a command of
		// its own (the pipelined path writes the address as it is).
		t.done <- outcome{index: t.index, err: bus.Permanent(errors.New("smtp: a recipient must not contain CR or LF"))}
		return c
	}
	msg, err := compose(p.from, t.job)
	if err != nil {
		t.done <- outcome{index: t.index, err: err}
		return c
	}
	if err := p.limit.Wait(ctx); err != nil {
		t.done <- outcome{index: t.index, err: err}
		return c
	}
	start := time.Now()
	for try := 0; ; try++ {
		if try > 0 {
			// Anew: a write cut short leaves go-mail's attachment readers
			// part-read. It composed once, so it composes again.
			msg, _ = compose(p.from, t.job)
		}
		reused := c != nil
		if c == nil {
			if c, err = p.dial(ctx); err != nil {
				t.done <- outcome{index: t.index, err: fmt.Errorf("smtp dial: %w", err)}
				return nil
			}
		}
		committed, err := p.transact(c, t, msg)
		if committed {
			p.m.sendSeconds.Observe(time.Since(start).Seconds())
			return c
		}
		var reply *textproto.Error
		if errors.As(err, &reply) {
			// The server answered: the connection is fine once the
			// transaction is reset.
			if rerr := c.Reset(); rerr != nil {
				p.drop(c)
				c = nil
			}
			t.done <- outcome{index: t.index, err: err}
			return c
		}
		p.drop(c)
		c = nil
		// A connection the server closed while idle fails on its first
		// command; nothing was handed over, so one redial is safe.
		if reused && try == 0 && errors.Is(err, errConnBeforeCommit) {
			continue
		}
		t.done <- outcome{index: t.index, err: err}
		return nil
	}
}

var (
	// errConnBeforeCommit marks a connection that failed before the "."
	// that ends the message: the server cannot have accepted it.
	errConnBeforeCommit = errors.New("smtp connection failed before the message was complete")
	// errWithdrawn marks a message the mailer chose not to complete.
	errWithdrawn = errors.New("message withdrawn before the end of data")
)

// transact runs one mail transaction on c. It returns committed = true once
// the server accepted the message, which then belongs to the ledger (and
// t.done is answered by it). Otherwise the message was not accepted, except
// when the connection broke after the "." (then the server may have it; the
// retry that follows is the one duplicate SMTP cannot rule out).
func (p *pool) transact(c *smtp.Client, t *task, msg *mail.Msg) (committed bool, err error) {
	deadline := time.Now().Add(p.timeout)
	if err := c.UpdateDeadline(p.timeout); err != nil {
		return false, fmt.Errorf("%w: %w", errConnBeforeCommit, err)
	}
	before := func(err error) error {
		var reply *textproto.Error
		if errors.As(err, &reply) {
			return err
		}
		return fmt.Errorf("%w: %w", errConnBeforeCommit, err)
	}
	w, err := p.open(c, t.job.To)
	if err != nil {
		return false, before(err)
	}
	if _, err := msg.WriteTo(w); err != nil {
		return false, before(err)
	}

	// Everything but the "." is with the server. Take a slot in the window
	// of unrecorded emails, and check that the job is still ours.
	waited := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err = p.ledger.acquire(ctx)
	cancel()
	p.m.windowWait.Observe(time.Since(waited).Seconds())
	if err != nil {
		return false, fmt.Errorf("%w: the sent ledger is behind", errWithdrawn)
	}
	if !t.held() {
		p.ledger.release()
		return false, fmt.Errorf("%w: lost contact with NATS, so another worker may have the job", errWithdrawn)
	}
	if err := w.Close(); err != nil {
		p.ledger.release()
		var reply *textproto.Error
		if !errors.As(err, &reply) {
			p.m.ambiguous.Inc()
			err = fmt.Errorf("connection lost after the message was handed over (it may have been delivered): %w", err)
		}
		return false, err
	}
	p.ledger.record(&entry{task: t, sentAt: time.Now()})
	return true, nil
}

// open starts a mail transaction to one recipient and returns the writer
// of its content; closing it sends the final "." and reads the reply.
// Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out
// in one write and their three replies are read after it: one round trip
// where go-mail's client waits for each, so an email takes two round trips
// instead of four (the content and its "." are the second).
func (p *pool) open(c *smtp.Client, to string) (io.WriteCloser, error) {
	// go-mail's low-level client sends the path as given: RFC 5321 wants
	// it in angle brackets (some servers, Mailpit among them, insist).
	rcpt := "<" + to + ">"
	if ok, _ := c.Extension("PIPELINING"); !ok {
		if err := c.Mail(p.envelopeFrom); err != nil {
			return nil, err
		}
		if err := c.Rcpt(rcpt); err != nil {
			return nil, err
		}
		return c.Data()
	}
	mail := "MAIL FROM:" + p.envelopeFrom
	// The parameters go-mail's Client.Mail adds (this client sets no DSN).
	if ok, _ := c.Extension("8BITMIME"); ok {
		mail += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		mail += " SMTPUTF8"
	}
	text := c.Text
	if _, err := text.W.WriteString(mail + "\r\nRCPT TO:" + rcpt + "\r\nDATA\r\n"); err != nil {
		return nil, err
	}
	if err := text.W.Flush(); err != nil {
		return nil, err
	}
	var refused error
	for _, code := range []int{250, 25} {
		if _, _, err := text.ReadResponse(code); err != nil {
			var reply *textproto.Error
			if !errors.As(err, &reply) {
				return nil, err // the connection, not the server's answer
			}
			refused = cmp.Or(refused, err)
		}
	}
	if _, _, err := text.ReadResponse(354); err != nil {
		return nil, cmp.Or(refused, err)
	}
	data := pipelinedData{WriteCloser: text.DotWriter(), text: text}
	if refused != nil {
		// A server that starts the content after refusing the sender or
		// the recipient has no one to deliver it to: end it, empty, and
		// report the refusal.
		_ = data.Close()
		return nil, refused
	}
	return data, nil
}

// pipelinedData is a message's content after a pipelined DATA. Close
// sends the "." and reads the server's reply, as go-mail's DataCloser does.
type pipelinedData struct {
	io.WriteCloser
	text *textproto.Conn
}

func (d pipelinedData) Close() error {
	if err := d.WriteCloser.Close(); err != nil {
		return err
	}
	_, _, err := d.text.ReadResponse(250)
	return err
}

func (p *pool) dial(ctx context.Context) (*smtp.Client, error) {
	c, err := p.dialer.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return nil, err
	}
	p.m.dials.Inc()
	p.m.connsOpen.Inc()
	return c, nil
}

// drop closes a connection in an unknown state without QUIT: a message
// whose "." was not sent is discarded by the server.
func (p *pool) drop(c *smtp.Client) {
	_ = c.Close()
	p.m.connsOpen.Dec()
}

// envelopeAddress is the address part of SMTP_FROM ("Name <a@b>" → "a@b").
func envelopeAddress(from string) (string, error) {
	a, err := netmail.ParseAddress(from)
	if err != nil {
		return "", fmt.Errorf("mailer: SMTP_FROM %q: %w", from, err)
	}
	return "<" + a.Address + ">", nil // the reverse path, as MAIL FROM takes it
}

// permanentSMTP reports whether err means retrying cannot help: a 5xx reply.
// A 4xx reply and a network error are temporary.
func permanentSMTP(err error) bool {
	var reply *textproto.Error
	return errors.As(err, &reply) && reply.Code >= 500
}
