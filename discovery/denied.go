package discovery

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"
)

// MarkDenied marks an AWS refusal for lack of permission (AccessDenied, AccessDeniedException)
// with ErrAccessDenied, so that boot stops at once instead of retrying until --wait.
// Other errors come back unchanged.
func MarkDenied(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "AccessDeniedException") {
		return fmt.Errorf("%w (%w)", ErrAccessDenied, err)
	}
	return err
}
