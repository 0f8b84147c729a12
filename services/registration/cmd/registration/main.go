// Command registration runs Plenary's registration service.
package main

import (
	"context"
	"log/slog"

	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/services/registration"
)

func main() {
	service.Main(func(ctx context.Context, log *slog.Logger) error {
		cfg, err := registration.LoadConfig()
		if err != nil {
			return err
		}
		return registration.Run(ctx, cfg, log)
	})
}
