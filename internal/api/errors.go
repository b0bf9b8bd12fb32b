package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error with an HTTP status and a stable code. Handlers return
// it (or wrap it); anything else becomes a 500 "internal".
type Error struct {
	Status  int
	Code    string
	Message string
	// Err is why a Client call got no answer at all (the connection, the
	// TLS pin: a *CertError); nil for an answer of the node.
	Err error
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Codes used by the node API.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeUnavailable      = "unavailable"
	CodeInternal         = "internal"
	// CodeDetached: the caller went away before the operation it started
	// finished; the operation carries on on the node.
	CodeDetached = "detached"
	// CodeIncompatible: the caller speaks a protocol this node does not
	// work with (version.Compatible); nothing was done.
	CodeIncompatible = "incompatible"
)

// Errorf builds an *Error.
func Errorf(status int, code, format string, a ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// errorFor maps any error to what the client sees. Internal errors are
// reported by code only; their text goes to the log, where it may name
// paths the client should not learn.
func errorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; the node's log has the details"}
}
