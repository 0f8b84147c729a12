module github.com/plenaryhq/plenary/services/mailer

go 1.26.0

require github.com/plenaryhq/plenary/pkg v0.0.0

replace github.com/plenaryhq/plenary/pkg => ../../pkg
