// Package embedded starts Plenary's infrastructure inside the calling process:
// a NATS server with JetStream, FerretDB (the MongoDB wire protocol on SQLite)
// and an SMTP server. The local launcher (make run) and the test kit use it;
// production runs the real servers.
package embedded
