package embedded_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

const msg = "Subject: hi\r\n\r\nhello\r\n"

func TestSMTPServer(t *testing.T) {
	var mu sync.Mutex
	var got []embedded.Message
	fail := errors.New("disk full")
	var deliverErr error
	srv, err := embedded.StartSMTP("", func(m embedded.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if deliverErr != nil {
			return deliverErr
		}
		got = append(got, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	send := func() error {
		return smtp.SendMail(srv.Addr, nil, "a@plenary.test", []string{"b@example.org", "c@example.org"}, []byte(msg))
	}

	tests := []struct {
		name     string
		fault    func() embedded.Fault
		deliver  error
		wantCode int // 0: accepted
	}{
		{"no fault function accepts", nil, nil, 0},
		{"accept", func() embedded.Fault { return embedded.Accept }, nil, 0},
		{"temporary", func() embedded.Fault { return embedded.Temporary }, nil, 451},
		{"permanent", func() embedded.Fault { return embedded.Permanent }, nil, 554},
		{"deliver fails", nil, fail, 451},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got, deliverErr = nil, tc.deliver
			mu.Unlock()
			srv.SetFault(tc.fault)

			err := send()
			var te *textproto.Error
			switch {
			case tc.wantCode == 0 && err != nil:
				t.Fatalf("send = %v, want it accepted", err)
			case tc.wantCode != 0 && (!errors.As(err, &te) || te.Code != tc.wantCode):
				t.Fatalf("send = %v, want code %d", err, tc.wantCode)
			}

			mu.Lock()
			defer mu.Unlock()
			if tc.wantCode != 0 {
				if len(got) != 0 {
					t.Errorf("delivered %d messages for a refused send", len(got))
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("delivered %d messages, want 1", len(got))
			}
			m := got[0]
			if m.From != "a@plenary.test" || strings.Join(m.To, ",") != "b@example.org,c@example.org" || !strings.Contains(string(m.Data), "hello") {
				t.Errorf("delivered from %q to %v data %q", m.From, m.To, m.Data)
			}
		})
	}
}
