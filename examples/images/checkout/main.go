// checkout turns a cart into an order with a computed total.
package main

import (
	"encoding/json"
	"errors"

	"winky.dev/examples/images/internal/fn"
)

type item struct {
	SKU      string  `json:"sku"`
	Price    float64 `json:"price"`
	Quantity int     `json:"quantity"`
}

type order struct {
	Owner  string  `json:"owner"`
	Items  []item  `json:"items"`
	Total  float64 `json:"total"`
	Status string  `json:"status"`
}

func main() {
	fn.Run(func(request json.RawMessage) (any, error) {
		var cart struct {
			Owner string `json:"owner"`
			Items []item `json:"items"`
		}
		if err := json.Unmarshal(request, &cart); err != nil {
			return nil, err
		}
		if cart.Owner == "" || len(cart.Items) == 0 {
			return nil, errors.New("a cart needs an owner and items")
		}
		total := 0.0
		for _, it := range cart.Items {
			if it.Quantity <= 0 || it.Price < 0 {
				return nil, errors.New("quantities must be positive and prices not negative")
			}
			total += it.Price * float64(it.Quantity)
		}
		return order{Owner: cart.Owner, Items: cart.Items, Total: total, Status: "pending"}, nil
	})
}
