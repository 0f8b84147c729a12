// Command local runs all of Plenary in one process for development and
// demos: embedded NATS and FerretDB with their data under ./.data, the four
// services behind one public listener, and a local mailbox.
//
//	go run ./deploy/local [--demo] [--data .data] [--addr :8080] [--cpuprofile FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/plenaryhq/plenary/pkg/service"
)

func main() {
	var opts Options
	flag.StringVar(&opts.DataDir, "data", ".data", "directory for NATS, FerretDB, secrets and the mailbox")
	flag.StringVar(&opts.Addr, "addr", envOr("HTTP_ADDR", ":8080"), "public listen address")
	flag.BoolVar(&opts.Demo, "demo", false, "seed a demo event (the OSCE roundtable) if it does not exist")
	benchN := flag.Int("bench", 0, "instead of serving, benchmark the system with this many registrations (temporary data)")
	benchWorkers := flag.Int("concurrency", 32, "concurrent clients for --bench")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole process to this file (go tool pprof)")
	flag.Parse()
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "plenary:", err)
			os.Exit(1)
		}
		defer stopProfile()
	}
	opts.PublicURL = os.Getenv("PUBLIC_URL")
	opts.NATSURL = os.Getenv("NATS_URL")
	opts.MongoURI = os.Getenv("MONGODB_URI")
	opts.SMTPAddr = os.Getenv("SMTP_ADDR")
	opts.AdminToken = os.Getenv("ADMIN_TOKENS")
	opts.LinkKey = os.Getenv("LINK_KEY")

	level := service.LogLevel(os.Getenv("LOG_LEVEL"))
	opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := func() error { return Run(ctx, opts) }
	if *benchN > 0 {
		if os.Getenv("LOG_LEVEL") == "" {
			opts.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		run = func() error { return runBench(ctx, *benchN, *benchWorkers, opts.Out, opts.Log) }
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "plenary:", err)
		os.Exit(1) //nolint:gocritic // the profile of a failed run is not needed
	}
}

// startCPUProfile profiles the process until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
