package discovery

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
)

func TestMarkDenied(t *testing.T) {
	for _, tt := range []struct {
		err    error
		denied bool
	}{
		{&smithy.GenericAPIError{Code: "AccessDenied", Message: "no"}, true},
		{fmt.Errorf("wrapped: %w", &smithy.GenericAPIError{Code: "AccessDeniedException"}), true},
		{&smithy.GenericAPIError{Code: "Throttling"}, false},
		{errors.New("connection refused"), false},
	} {
		got := MarkDenied(tt.err)
		if errors.Is(got, ErrAccessDenied) != tt.denied || !errors.Is(got, tt.err) {
			t.Errorf("MarkDenied(%v) = %v, want denied=%v and the original kept", tt.err, got, tt.denied)
		}
	}
}
