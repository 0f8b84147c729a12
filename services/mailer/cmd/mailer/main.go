// Command mailer runs Plenary's SMTP worker.
package main

import (
	"context"
	"log/slog"

	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/services/mailer"
)

func main() {
	service.Main(func(ctx context.Context, log *slog.Logger) error {
		cfg, err := mailer.LoadConfig()
		if err != nil {
			return err
		}
		return mailer.Run(ctx, cfg, log)
	})
}
