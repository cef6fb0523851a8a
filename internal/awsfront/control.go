package awsfront

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/swarm-agent/swarm-agent/internal/awsfront/imdsfake"
)

// controlHandler serves the control API documented in README.md.
func (f *Front) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "api": f.apiURL, "imds": f.imdsURL, "dns": f.DNSAddr()})
	})
	mux.HandleFunc("POST /instances", func(w http.ResponseWriter, r *http.Request) {
		var in imdsfake.Instance
		if !readJSON(w, r, &in) {
			return
		}
		if in.ID == "" || in.PrivateIP == "" {
			writeJSON(w, http.StatusBadRequest, errBody("instance needs id and private_ip"))
			return
		}
		f.AddInstance(in)
		writeJSON(w, http.StatusOK, in)
	})
	mux.HandleFunc("POST /scale-in", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			InstanceID string `json:"instance_id"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if err := f.StartScaleIn(r.Context(), body.InstanceID); err != nil {
			writeJSON(w, http.StatusBadRequest, errBody(err.Error()))
			return
		}
		a, _ := f.LifecycleAction(body.InstanceID)
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("POST /spot", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			InstanceID string    `json:"instance_id"`
			Time       time.Time `json:"time"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if body.Time.IsZero() {
			body.Time = time.Now().Add(2 * time.Minute)
		}
		if err := f.SpotNotice(body.InstanceID, body.Time); err != nil {
			writeJSON(w, http.StatusNotFound, errBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"instance_id": body.InstanceID, "time": body.Time.UTC()})
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			InstanceID string `json:"instance_id"`
			imdsfake.Event
		}
		if !readJSON(w, r, &body) {
			return
		}
		ev, err := f.ScheduleEvent(body.InstanceID, body.Event)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, ev)
	})
	mux.HandleFunc("POST /events/{instance_id}/{event_id}/end", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			State string `json:"state"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if err := f.EndEvent(r.PathValue("instance_id"), r.PathValue("event_id"), body.State); err != nil {
			writeJSON(w, http.StatusBadRequest, errBody(err.Error()))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /status-checks", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			InstanceID string `json:"instance_id"`
			StatusChecks
		}
		if !readJSON(w, r, &body) {
			return
		}
		if err := f.SetStatusChecks(body.InstanceID, body.StatusChecks); err != nil {
			writeJSON(w, http.StatusBadRequest, errBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Fault
			LatencyMS int64 `json:"latency_ms"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		ft := body.Fault
		if body.LatencyMS > 0 {
			ft.Latency = time.Duration(body.LatencyMS) * time.Millisecond
		}
		switch ft.Kind {
		case FaultThrottle, Fault5xx, FaultLatency, FaultDrop, FaultPriorReqNC, FaultDenied:
		default:
			writeJSON(w, http.StatusBadRequest, errBody(fmt.Sprintf("fault kind %q: must be throttle, 5xx, latency, drop, prior-request-not-complete or denied", ft.Kind)))
			return
		}
		if ft.Service == "" {
			writeJSON(w, http.StatusBadRequest, errBody("fault needs a service"))
			return
		}
		f.InjectFault(ft)
		writeJSON(w, http.StatusOK, ft)
	})
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		svc, op := r.URL.Query().Get("service"), r.URL.Query().Get("operation")
		out := []Request{}
		for _, q := range f.Requests() {
			if (svc == "" || q.Service == svc) && (op == "" || q.Operation == op) {
				out = append(out, q)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /requests", func(w http.ResponseWriter, r *http.Request) {
		f.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	for path, get := range map[string]func(string) (Action, bool){"/actions/": f.LifecycleAction, "/launches/": f.LaunchAction} {
		mux.HandleFunc("GET "+path+"{instance_id}", func(w http.ResponseWriter, r *http.Request) {
			a, ok := get(r.PathValue("instance_id"))
			if !ok {
				writeJSON(w, http.StatusNotFound, errBody("no lifecycle action for "+r.PathValue("instance_id")))
				return
			}
			writeJSON(w, http.StatusOK, a)
		})
	}
	mux.HandleFunc("POST /actions/{instance_id}/advance", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Seconds float64 `json:"seconds"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		id := r.PathValue("instance_id")
		_, terminating := f.LifecycleAction(id)
		if _, launching := f.LaunchAction(id); !terminating && !launching {
			writeJSON(w, http.StatusNotFound, errBody("no lifecycle action for "+id))
			return
		}
		f.AdvanceHook(id, time.Duration(body.Seconds*float64(time.Second)))
		a, ok := f.LifecycleAction(id)
		if !ok {
			a, _ = f.LaunchAction(id)
		}
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("POST /age", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Group   string  `json:"group"`
			Seconds float64 `json:"seconds"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		ids, err := f.AgeInstances(r.Context(), body.Group, time.Duration(body.Seconds*float64(time.Second)))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"group": body.Group, "instances": ids})
	})
	mux.HandleFunc("POST /notice-queue", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			QueueURL string `json:"queue_url"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		f.SetNoticeQueue(body.QueueURL)
		writeJSON(w, http.StatusOK, body)
	})
	return mux
}

func errBody(msg string) map[string]string { return map[string]string{"error": msg} }

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, errBody("decode json body: "+err.Error()))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
