package console

import (
	"errors"
	"fmt"
)

// Exit statuses of the console, stable for scripts.
const (
	ExitOK          = 0
	ExitFailure     = 1 // anything else
	ExitUsage       = 2 // bad flags or arguments; nothing was sent
	ExitUnreachable = 3 // no node answered
	ExitRefused     = 4 // certificate not trusted, or token refused
	ExitConflict    = 5 // the nodes' state forbids the operation; nothing was changed
	ExitDetached    = 6 // the console stopped waiting; the operation carries on on the node
)

// ExitError carries a distinct exit status with its message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func exitf(code int, format string, a ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, a...)}
}

// ExitCode maps an error from a command to the process exit status.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}
