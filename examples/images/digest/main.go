// digest summarises a user's documents for the daily digest.
package main

import (
	"encoding/json"

	"winky.dev/examples/images/internal/fn"
)

func main() {
	fn.Run(func(request json.RawMessage) (any, error) {
		var in struct {
			Owner string            `json:"owner"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(request, &in); err != nil {
			return nil, err
		}
		return map[string]any{"owner": in.Owner, "count": len(in.Items)}, nil
	})
}
