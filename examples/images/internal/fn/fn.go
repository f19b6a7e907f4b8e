// Package fn is the tiny runtime of the example functions.
//
// A function is a handler from a JSON request to a JSON answer. In the
// emulator (no WINKY_TRIGGER in the environment) it reads one request from
// stdin and writes the answer to stdout; deployed with an http trigger it
// serves POST requests on $PORT, and with a schedule it runs once with an
// empty request.
package fn

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
)

// Handler turns a request into an answer.
type Handler func(request json.RawMessage) (any, error)

// Run runs h the way the environment asks.
func Run(h Handler) {
	switch os.Getenv("WINKY_TRIGGER") {
	case "http":
		port := os.Getenv("PORT")
		if port == "" {
			port = "8080"
		}
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			answer, err := h(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnprocessableEntity)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(answer)
		})
		if err := http.ListenAndServe(":"+port, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "schedule":
		once(h, []byte("{}"))
	default:
		body, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		if err != nil {
			fmt.Fprintln(os.Stderr, "reading the request:", err)
			os.Exit(2)
		}
		once(h, body)
	}
}

func once(h Handler, body []byte) {
	answer, err := h(body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(answer); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
