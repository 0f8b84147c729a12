package mailer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/plenaryhq/plenary/pkg/events"
)

// BareSendRate is the raw limit the mailer's drain is measured against: it
// sends n emails with go-mail's own Client.Send over conns connections,
// dialled before the clock starts as the mailer's are (same TLS policy,
// auth, HELO and timeout from cfg), each email composed from job(i) exactly
// as the mailer composes it. It returns the emails per second, from the
// first send to the last reply.
func BareSendRate(ctx context.Context, cfg SMTPConfig, conns, n int, job func(i int) events.MailJob) (float64, error) {
	msgs := make([]*mail.Msg, n)
	for i := range msgs {
		msg, err := compose(cfg.From, job(i))
		if err != nil {
			return 0, err
		}
		msgs[i] = msg
	}
	clients := make([]*mail.Client, conns)
	for i := range clients {
		c, err := newDialer(cfg)
		if err != nil {
			return 0, err
		}
		if err := c.DialWithContext(ctx); err != nil {
			return 0, err
		}
		defer c.Close()
		clients[i] = c
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, conns)
	start := time.Now()
	for k, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := c.Send(msgs[i]); err != nil {
					errs[k] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / took.Seconds(), ctx.Err()
}
