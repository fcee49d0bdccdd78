// Command refwebhook is the reference that bench/modes.py compares our webhook with:
// the smallest mutating admission webhook that labels Pods as ours does, on Go's
// standard library alone. It answers AdmissionReview v1 on POST /mutate with the
// same JSONPatch as app/admission (one `add` of the whole labels map when the Pod
// has none, else an `add` or `replace` per label that differs) and 200 on any
// other path, for the readiness probe. No warnings, logs, metrics or certificate
// reload: it shows what any webhook costs the API server, not a product.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
)

type labelFlags [][2]string // key, value: in flag order, as our server keeps them

func (l *labelFlags) String() string { return fmt.Sprint(*l) }

func (l *labelFlags) Set(pair string) error {
	key, value, ok := strings.Cut(pair, "=")
	if !ok || key == "" {
		return fmt.Errorf("want key=value, got %q", pair)
	}
	*l = append(*l, [2]string{key, value})
	return nil
}

type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID    string `json:"uid"`
		Object struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		} `json:"object"`
	} `json:"request,omitempty"`
	Response *response `json:"response,omitempty"`
}

type response struct {
	UID       string `json:"uid"`
	Allowed   bool   `json:"allowed"`
	PatchType string `json:"patchType,omitempty"`
	Patch     []byte `json:"patch,omitempty"` // encoding/json writes []byte as base64
}

type operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func patch(existing map[string]string, wanted labelFlags) []operation {
	if existing == nil {
		all := map[string]string{}
		for _, kv := range wanted {
			all[kv[0]] = kv[1]
		}
		return []operation{{"add", "/metadata/labels", all}}
	}
	var ops []operation
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	for _, kv := range wanted {
		old, found := existing[kv[0]]
		path := "/metadata/labels/" + escape.Replace(kv[0])
		if !found {
			ops = append(ops, operation{"add", path, kv[1]})
		} else if old != kv[1] {
			ops = append(ops, operation{"replace", path, kv[1]})
		}
	}
	return ops
}

func main() {
	var labels labelFlags
	certFile := flag.String("tls-cert", "", "PEM certificate")
	keyFile := flag.String("tls-key", "", "PEM private key")
	port := flag.Int("port", 8443, "HTTPS port")
	flag.Var(&labels, "label", "key=value to set on every Pod (repeatable)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) {
		var in review
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 3<<20)).Decode(&in); err != nil || in.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		out := &response{UID: in.Request.UID, Allowed: true}
		if ops := patch(in.Request.Object.Metadata.Labels, labels); len(ops) > 0 {
			out.PatchType = "JSONPatch"
			out.Patch, _ = json.Marshal(ops)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review{APIVersion: in.APIVersion, Kind: in.Kind, Response: out})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })

	server := &http.Server{
		Addr:              fmt.Sprintf(":%d", *port),
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Printf("refwebhook listening on %s, labels %v", server.Addr, labels)
	log.Fatal(server.ListenAndServeTLS(*certFile, *keyFile))
}
