package awsfront

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// putSecretValue refuses a write to a secret scheduled for deletion, as AWS does
// (InvalidRequestException; moto accepts it), and forwards every other write to moto.
func (f *Front) putSecretValue(c *call) {
	var in struct{ SecretId string }
	if err := json.Unmarshal(c.body, &in); err == nil && in.SecretId != "" {
		out, err := f.sm.DescribeSecret(c.r.Context(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(in.SecretId)})
		var nf *smtypes.ResourceNotFoundException
		switch {
		case err == nil && out.DeletedDate != nil:
			c.writeError(http.StatusBadRequest, "InvalidRequestException",
				"You can't perform this operation on the secret because it was marked for deletion.")
			return
		case err != nil && !errors.As(err, &nf):
			c.writeError(http.StatusInternalServerError, "InternalFailure", "describe secret: "+err.Error())
			return
		}
	}
	f.proxy.ServeHTTP(c.w, c.r)
}
