package service

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Main is the body of every service's main: a JSON logger on stdout at
// LOG_LEVEL (debug, info, warn, error), a context cancelled by SIGINT or
// SIGTERM, and exit status 1 when run fails.
func Main(run func(ctx context.Context, log *slog.Logger) error) {
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: LogLevel(os.Getenv("LOG_LEVEL"))}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("stopped with an error", "err", err)
		os.Exit(1)
	}
}

// LogLevel parses a level name; anything unknown is info.
func LogLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
