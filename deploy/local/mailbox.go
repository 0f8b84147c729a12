package main

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

// mailbox is the local stand-in for an SMTP relay: it accepts every email,
// writes it to dir as an .eml file a mail client can open, and prints one
// line per email.
type mailbox struct {
	*embedded.SMTPServer
	dir string
}

func startMailbox(dir string, out io.Writer) (*mailbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	srv, err := embedded.StartSMTP("127.0.0.1:0", func(m embedded.Message) error {
		subject, to := "(no subject)", strings.Join(m.To, ", ")
		if parsed, err := mail.ReadMessage(bytes.NewReader(m.Data)); err == nil {
			if s, err := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject")); err == nil {
				subject = s
			}
		}
		name := fmt.Sprintf("%s-%d.eml", m.At.UTC().Format("20060102T150405.000000000Z"), len(m.Data))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, m.Data, 0o600); err != nil {
			return fmt.Errorf("mailbox: %w", err)
		}
		fmt.Fprintf(out, "%s  mail  to=%s  subject=%q  file=%s\n", time.Now().Format("15:04:05"), to, subject, path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &mailbox{SMTPServer: srv, dir: dir}, nil
}
