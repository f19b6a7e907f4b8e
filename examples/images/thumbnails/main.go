// thumbnails names the thumbnail of every image attached to a document.
package main

import (
	"encoding/json"
	"path"
	"strings"

	"winky.dev/examples/images/internal/fn"
)

func main() {
	fn.Run(func(request json.RawMessage) (any, error) {
		var doc struct {
			ID     string   `json:"id"`
			Images []string `json:"images"`
		}
		if err := json.Unmarshal(request, &doc); err != nil {
			return nil, err
		}
		thumbs := []string{}
		for _, image := range doc.Images {
			ext := path.Ext(image)
			thumbs = append(thumbs, strings.TrimSuffix(image, ext)+".thumb"+ext)
		}
		return map[string]any{"id": doc.ID, "thumbnails": thumbs}, nil
	})
}
