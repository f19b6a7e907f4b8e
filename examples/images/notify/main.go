// notify decides who is told about a new message: every member but its author.
package main

import (
	"encoding/json"

	"winky.dev/examples/images/internal/fn"
)

func main() {
	fn.Run(func(request json.RawMessage) (any, error) {
		var message struct {
			Author  string   `json:"author"`
			Members []string `json:"members"`
			Text    string   `json:"text"`
		}
		if err := json.Unmarshal(request, &message); err != nil {
			return nil, err
		}
		recipients := []string{}
		for _, member := range message.Members {
			if member != message.Author {
				recipients = append(recipients, member)
			}
		}
		return map[string]any{"recipients": recipients}, nil
	})
}
