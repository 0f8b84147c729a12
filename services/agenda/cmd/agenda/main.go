// Command agenda runs Plenary's agenda service.
package main

import (
	"context"
	"log/slog"

	"github.com/plenaryhq/plenary/pkg/service"
	"github.com/plenaryhq/plenary/services/agenda"
)

func main() {
	service.Main(func(ctx context.Context, log *slog.Logger) error {
		cfg, err := agenda.LoadConfig()
		if err != nil {
			return err
		}
		return agenda.Run(ctx, cfg, log)
	})
}
