// Package web holds the Fiber defaults every Plenary service shares: RFC 9457
// problem+json errors, request ids, an access log without personal data,
// panic recovery, the 64 KiB body limit, health, readiness and metrics.
package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ProblemBase prefixes every problem type URI.
const ProblemBase = "https://plenary.dev/problems/"

// FieldError is one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an RFC 9457 problem. Handlers return it; the error handler renders
// it as application/problem+json.
type Error struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Detail)
}

// Problem returns a problem with the given status, a short code used as its
// type ("registration_closed") and an actionable detail for the user.
func Problem(status int, code, detail string) *Error {
	return &Error{Type: ProblemBase + code, Title: http.StatusText(status), Status: status, Detail: detail}
}

// NotFound is a 404 problem.
func NotFound(detail string) *Error { return Problem(http.StatusNotFound, "not_found", detail) }

// BadRequest is a 400 problem.
func BadRequest(detail string) *Error { return Problem(http.StatusBadRequest, "bad_request", detail) }

// Conflict is a 409 problem with a code.
func Conflict(code, detail string) *Error { return Problem(http.StatusConflict, code, detail) }

// Validation collects field errors; Err returns nil when there are none.
type Validation []FieldError

// Add records that field is invalid.
func (v *Validation) Add(field, format string, args ...any) {
	*v = append(*v, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns a 422 problem listing the fields, or nil.
func (v Validation) Err() error {
	if len(v) == 0 {
		return nil
	}
	names := make([]string, len(v))
	for i, f := range v {
		names[i] = f.Field
	}
	p := Problem(http.StatusUnprocessableEntity, "validation", "invalid fields: "+strings.Join(names, ", "))
	p.Errors = v
	return p
}

// AsProblem finds a *Error in err's chain.
func AsProblem(err error) (*Error, bool) {
	var p *Error
	ok := errors.As(err, &p)
	return p, ok
}
