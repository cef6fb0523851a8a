package awsfront

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Request is one AWS API request as the front saw it.
type Request struct {
	Time       time.Time
	Service    string // from the SigV4 credential scope
	Operation  string
	SourceIP   string
	InstanceID string // instance whose PrivateIP is SourceIP, "" if none
	Attempt    int    // from Amz-Sdk-Request: attempt=N
	Params     map[string]string
	Status     int
	ErrorCode  string
}

// Requests returns a copy of the request log.
func (f *Front) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.reqs...)
}

// Count returns how many logged requests match service and operation ("" = any).
func (f *Front) Count(service, op string) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Service == service && (op == "" || r.Operation == op) {
			n++
		}
	}
	return n
}

// ResetRequests empties the request log.
func (f *Front) ResetRequests() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

// writeError answers in the wire format of the request's service protocol.
func (c *call) writeError(status int, code, msg string) {
	w := c.w
	rid := c.f.nextID("req-")
	w.Header().Set("X-Amzn-Requestid", rid)
	switch {
	case c.req.Service == "ssm" || strings.HasPrefix(c.r.Header.Get("X-Amz-Target"), "AmazonSSM."),
		c.req.Service == "secretsmanager" || strings.HasPrefix(c.r.Header.Get("X-Amz-Target"), "secretsmanager."):
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": jsonErrorType(code), "message": msg})
	case c.req.Service == "sqs" || strings.HasPrefix(c.r.Header.Get("X-Amz-Target"), "AmazonSQS."):
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Query-Error", code+";"+faultOf(status))
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": msg})
	case c.req.Service == "ec2":
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			xmlEsc(code), xmlEsc(msg), rid)
	default:
		ns := "http://autoscaling.amazonaws.com/doc/2011-01-01/"
		if c.req.Service == "route53" {
			ns = route53NS
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0"?>`+"\n"+
			`<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			ns, faultOf(status), xmlEsc(code), xmlEsc(msg), rid)
	}
}

// jsonErrorType maps query-style codes to SSM's JSON names.
func jsonErrorType(code string) string {
	switch code {
	case "Throttling":
		return "ThrottlingException"
	case "InternalFailure":
		return "InternalServerError"
	case "MissingAuthenticationToken":
		return "MissingAuthenticationTokenException"
	}
	return code
}

func faultOf(status int) string {
	if status >= 500 {
		return "Receiver"
	}
	return "Sender"
}

func xmlEsc(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// recorder keeps the status and, for errors, the body so the log can name the error code.
type recorder struct {
	http.ResponseWriter
	status int
	errBuf bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.status >= 400 && r.errBuf.Len() < 64<<10 {
		r.errBuf.Write(p)
	}
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Flush() {
	if fl, ok := r.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

var (
	xmlCodeRe  = regexp.MustCompile(`<Code>([^<]+)</Code>`)
	jsonTypeRe = regexp.MustCompile(`"__type"\s*:\s*"([^"]+)"`)
)

func (r *recorder) errorCode() string {
	if r.status < 400 {
		return ""
	}
	if q := r.Header().Get("X-Amzn-Query-Error"); q != "" {
		code, _, _ := strings.Cut(q, ";")
		return code
	}
	b := r.errBuf.Bytes()
	if m := xmlCodeRe.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	if m := jsonTypeRe.FindSubmatch(b); m != nil {
		t := string(m[1])
		if i := strings.LastIndexAny(t, "#:"); i >= 0 && strings.Contains(t, "#") {
			t = t[strings.LastIndex(t, "#")+1:]
		}
		return t
	}
	return ""
}

// operationOf names the operation and collects its parameters for the log.
func operationOf(service string, r *http.Request, body []byte) (string, map[string]string) {
	params := map[string]string{}
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		_, op, _ := strings.Cut(t, ".")
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) == nil {
			for k, v := range m {
				var s string
				if json.Unmarshal(v, &s) == nil {
					params[k] = s
				} else {
					params[k] = string(v)
				}
			}
		}
		redact(service, op, params)
		return op, params
	}
	if service == "route53" || strings.HasPrefix(r.URL.Path, "/2013-04-01/") {
		op, ps := route53Operation(r.Method, r.URL.Path)
		for k, v := range ps {
			params[k] = v
		}
		for k, v := range r.URL.Query() {
			params[k] = strings.Join(v, ",")
		}
		return op, params
	}
	form, err := url.ParseQuery(string(body))
	if err == nil {
		for k, v := range form {
			params[k] = strings.Join(v, ",")
		}
	}
	for k, v := range r.URL.Query() {
		if _, ok := params[k]; !ok {
			params[k] = strings.Join(v, ",")
		}
	}
	op := params["Action"]
	redact(service, op, params)
	return op, params
}

// redact keeps secrets (join tokens stored as SSM values) out of the log.
func redact(service, op string, params map[string]string) {
	if service == "ssm" || op == "PutParameter" {
		if _, ok := params["Value"]; ok {
			params["Value"] = "<redacted>"
		}
	}
	for _, k := range []string{"SecretString", "SecretBinary"} { // Secrets Manager writes
		if _, ok := params[k]; ok {
			params[k] = "<redacted>"
		}
	}
}

// route53Operation maps a REST path and method to the operation name and its path parameters.
func route53Operation(method, path string) (string, map[string]string) {
	p := strings.TrimPrefix(strings.TrimSuffix(path, "/"), "/2013-04-01/")
	seg := strings.Split(p, "/")
	ps := map[string]string{}
	switch {
	case len(seg) == 1 && seg[0] == "hostedzone":
		if method == http.MethodPost {
			return "CreateHostedZone", ps
		}
		return "ListHostedZones", ps
	case len(seg) == 1 && seg[0] == "hostedzonesbyname":
		return "ListHostedZonesByName", ps
	case len(seg) == 1 && seg[0] == "hostedzonesbyvpc":
		return "ListHostedZonesByVPC", ps
	case len(seg) == 2 && seg[0] == "hostedzone":
		ps["Id"] = seg[1]
		switch method {
		case http.MethodDelete:
			return "DeleteHostedZone", ps
		case http.MethodPost:
			return "UpdateHostedZoneComment", ps
		}
		return "GetHostedZone", ps
	case len(seg) == 3 && seg[0] == "hostedzone" && seg[2] == "rrset":
		ps["HostedZoneId"] = seg[1]
		if method == http.MethodPost {
			return "ChangeResourceRecordSets", ps
		}
		return "ListResourceRecordSets", ps
	case len(seg) == 3 && seg[0] == "hostedzone" && seg[2] == "associatevpc":
		ps["HostedZoneId"] = seg[1]
		return "AssociateVPCWithHostedZone", ps
	case len(seg) == 2 && seg[0] == "change":
		ps["Id"] = seg[1]
		return "GetChange", ps
	case len(seg) == 1 && seg[0] == "healthcheck":
		if method == http.MethodPost {
			return "CreateHealthCheck", ps
		}
		return "ListHealthChecks", ps
	case len(seg) >= 2 && seg[0] == "healthcheck":
		ps["HealthCheckId"] = seg[1]
		if len(seg) == 3 && seg[2] == "status" {
			return "GetHealthCheckStatus", ps
		}
		switch method {
		case http.MethodDelete:
			return "DeleteHealthCheck", ps
		case http.MethodPost:
			return "UpdateHealthCheck", ps
		}
		return "GetHealthCheck", ps
	case len(seg) >= 2 && seg[0] == "tags":
		if method == http.MethodPost && len(seg) == 3 {
			return "ChangeTagsForResource", ps
		}
		return "ListTagsForResource", ps
	}
	return method + " " + path, ps
}

func orDash(s string) string {
	if s == "" {
		return "i-unknown"
	}
	return s
}
