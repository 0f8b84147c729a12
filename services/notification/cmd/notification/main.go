// Command notification runs Plenary's notification service: it renders the
// emails registrations call for and queues them for the mailer.
package main

import (
	"context"
	"log/slog"

	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/services/notification"
)

func main() {
	service.Main(func(ctx context.Context, log *slog.Logger) error {
		cfg, err := notification.LoadConfig()
		if err != nil {
			return err
		}
		return notification.Run(ctx, cfg, log)
	})
}
