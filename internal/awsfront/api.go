package awsfront

// The AWS API entry point: each request identified by service and attempt, logged, faulted or
// throttled, then answered by the front or forwarded to moto.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serveAPI is the AWS API entry point: identify, log, fault, throttle, then answer or forward.
func (f *Front) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))

	srcIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	service := serviceFromAuth(r.Header.Get("Authorization"))
	req := Request{
		Time:     time.Now(),
		Service:  service,
		SourceIP: srcIP,
		Attempt:  attemptFromHeader(r.Header.Get("Amz-Sdk-Request")),
	}
	if in, ok := f.imds.ByIP(srcIP); ok {
		req.InstanceID = in.ID
	}
	req.Operation, req.Params = operationOf(service, r, body)
	if service == "secretsmanager" && !smReadOps[req.Operation] {
		sw := &smWriteCounted{ResponseWriter: w, f: f}
		defer sw.bump() // an answer with neither status nor body
		w = sw
	}
	rec := &recorder{ResponseWriter: w}
	c := &call{f: f, w: rec, r: r, body: body, req: &req}
	defer func() {
		req.Status = rec.statusCode()
		req.ErrorCode = rec.errorCode()
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		ev := f.log.Debug()
		if req.Status >= 400 {
			ev = f.log.Info()
		}
		ev.Str("service", req.Service).Str("operation", req.Operation).Str("addr", srcIP).
			Str("instance_id", req.InstanceID).Int("attempt", req.Attempt).Int("status", req.Status).
			Str("error_code", req.ErrorCode).Msg("aws request")
	}()

	if r.Header.Get("Authorization") == "" {
		c.writeError(http.StatusForbidden, "MissingAuthenticationToken", "Missing Authentication Token")
		return
	}
	if fault := f.takeFault(service, req.Operation, req.InstanceID); fault != nil {
		if done := c.applyFault(fault); done {
			return
		}
	}
	b := f.buckets[service+"."+req.Operation]
	if b == nil {
		b = f.buckets[service]
	}
	if b != nil && !b.take(time.Now()) {
		c.writeError(http.StatusBadRequest, "Throttling", "Rate exceeded")
		return
	}
	switch service + "." + req.Operation {
	case "route53.ChangeResourceRecordSets":
		f.changeRecordSets(c)
	case "route53.GetChange":
		f.getChange(c)
	case "route53.ListResourceRecordSets":
		f.listRecordSets(c)
	case "secretsmanager.GetSecretValue":
		f.getSecretValueShared(c)
	case "secretsmanager.PutSecretValue":
		f.putSecretValue(c)
	case "autoscaling.CompleteLifecycleAction":
		f.completeLifecycleAction(c)
	case "autoscaling.RecordLifecycleActionHeartbeat":
		f.recordHeartbeat(c)
	case "autoscaling.TerminateInstanceInAutoScalingGroup":
		f.terminateInGroup(c)
	case "autoscaling.SetDesiredCapacity":
		if !f.scaleOutFromPool(c) {
			f.setDesiredCapacity(c)
		}
	case "autoscaling.PutWarmPool":
		f.putWarmPool(c)
	case "autoscaling.DescribeWarmPool":
		f.describeWarmPool(c)
	case "autoscaling.DeleteWarmPool":
		f.deleteWarmPool(c)
	case "ec2.DescribeInstanceStatus":
		f.describeInstanceStatus(c)
	case "autoscaling.UpdateAutoScalingGroup":
		f.withMaxLifetime(c, func() { f.forwardWithLaunches(c, req.Params["AutoScalingGroupName"]) })
	case "autoscaling.CreateAutoScalingGroup":
		f.withMaxLifetime(c, func() { f.createGroup(c) })
	case "autoscaling.StartInstanceRefresh":
		f.startInstanceRefresh(c)
	case "autoscaling.DescribeInstanceRefreshes":
		f.describeInstanceRefreshes(c)
	case "autoscaling.CancelInstanceRefresh":
		f.cancelInstanceRefresh(c)
	case "autoscaling.DescribeAutoScalingInstances", "autoscaling.DescribeAutoScalingGroups":
		f.describeWithOverlay(c)
	default:
		f.proxy.ServeHTTP(rec, r)
	}
}

// call is one API request in flight.
type call struct {
	f    *Front
	w    *recorder
	r    *http.Request
	body []byte
	req  *Request
}

func (f *Front) nextID(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return fmt.Sprintf("%s%012d%s", prefix, f.seq, strconv.FormatInt(time.Now().UnixNano()%1e6, 36))
}

func serviceFromAuth(h string) string {
	i := strings.Index(h, "Credential=")
	if i < 0 {
		return ""
	}
	cred := h[i+len("Credential="):]
	if j := strings.IndexAny(cred, ", "); j >= 0 {
		cred = cred[:j]
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

func attemptFromHeader(h string) int {
	for _, p := range strings.Split(h, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && k == "attempt" {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
