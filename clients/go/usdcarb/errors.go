package usdcarb

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// details returns the decoded google.rpc details of err's status (nil when none).
func details(err error) []any {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return nil
	}
	return st.Details()
}

// FieldViolations returns the bad fields listed in err's BadRequest details.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	var out []*errdetails.BadRequest_FieldViolation
	for _, d := range details(err) {
		if br, ok := d.(*errdetails.BadRequest); ok {
			out = append(out, br.GetFieldViolations()...)
		}
	}
	return out
}

// ErrorInfo returns err's ErrorInfo detail (reason, domain, metadata), or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range details(err) {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// Reason returns ErrorInfo.reason of err (e.g. "NOT_IMPLEMENTED"), or "".
func Reason(err error) string { return ErrorInfo(err).GetReason() }

// RetryDelay returns the wait err's RetryInfo asks for, and whether it has one.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range details(err) {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
