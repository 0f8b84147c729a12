module github.com/plenaryhq/plenary/services/mailer

go 1.26.0

require github.com/plenaryhq/plenary/pkg v0.0.0

require (
	github.com/caarlos0/env/v11 v11.4.2 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/wneessen/go-mail v0.8.1 // indirect
	go.mongodb.org/mongo-driver/v2 v2.10.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace github.com/plenaryhq/plenary/pkg => ../../pkg
