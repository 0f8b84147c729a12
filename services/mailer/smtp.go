package mailer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/wneessen/go-mail"
)

// pool holds one go-mail client per worker. Each client keeps its SMTP
// connection open between messages and redials only when it was lost, so a
// burst of emails costs one handshake per worker, not one per message.
type pool struct {
	conns chan *conn
}

type conn struct {
	client *mail.Client
	live   bool
}

func newPool(cfg SMTPConfig, size int) (*pool, error) {
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
	p := &pool{conns: make(chan *conn, size)}
	for range size {
		c, err := mail.NewClient(host, opts...)
		if err != nil {
			return nil, fmt.Errorf("mailer: smtp client: %w", err)
		}
		p.conns <- &conn{client: c}
	}
	return p, nil
}

// send delivers m over a pooled connection. A connection found dead (the
// server closed it while idle) is redialled once before giving up.
func (p *pool) send(ctx context.Context, m *mail.Msg) error {
	var c *conn
	select {
	case c = <-p.conns:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { p.conns <- c }()

	for try := 0; ; try++ {
		if !c.live {
			if err := c.client.DialWithContext(ctx); err != nil {
				return fmt.Errorf("smtp dial: %w", err)
			}
			c.live = true
		}
		err := c.client.Send(m)
		if err == nil || m.IsDelivered() {
			// IsDelivered: the server said 250; a failing RSET after it does
			// not undo the delivery.
			return nil
		}
		var se *mail.SendError
		if errors.As(err, &se) && se.ErrorCode() != 0 {
			return err // the server answered; the connection is fine
		}
		_ = c.client.Close()
		c.live = false
		if try == 0 && errors.As(err, &se) && se.Reason == mail.ErrConnCheck {
			continue
		}
		return err
	}
}

// Close closes every connection.
func (p *pool) Close() {
	for range cap(p.conns) {
		c := <-p.conns
		if c.live {
			_ = c.client.Close()
		}
	}
}

// permanentSMTP reports whether err means retrying cannot help: a 5xx reply,
// or a message go-mail cannot send at all (bad sender or recipient).
func permanentSMTP(err error) bool {
	var se *mail.SendError
	if !errors.As(err, &se) {
		return false
	}
	if code := se.ErrorCode(); code != 0 {
		return code >= 500
	}
	switch se.Reason {
	case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
		return true
	}
	return false
}
