// Command ferretdb serves FerretDB (the MongoDB wire protocol on SQLite) as a
// standalone server, for the container images. It is FerretDB's embeddable
// package behind two flags: FerretDB's own command, built outside its
// repository, refuses to start without its generated version file.
//
//	ferretdb -listen :27017 -data /data
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/plenaryhq/plenary/pkg/embedded"
)

func main() {
	listen := flag.String("listen", ":27017", "TCP address to listen on")
	data := flag.String("data", "/data", "directory for the SQLite files")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	f, err := embedded.StartFerretDB(*data, *listen, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "ferretdb: listening on", *listen, "with data in", *data)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	f.Stop()
}
