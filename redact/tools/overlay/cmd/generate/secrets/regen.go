// Package reggen generates text based on regex definitions
// This is a slightly altered version of https://github.com/lucasjones/reggen
// Winky overlay of gitleaks (MIT, Copyright (c) 2019 Zachary Rice): every call
// is seeded from FNV-1a(regex) XOR (call counter * 7919), so that the samples
// are the same on every run.
package secrets

import (
	"hash/fnv"

	"github.com/lucasjones/reggen"
)

var counter int64

func NewSecret(regex string) string {
	g, err := reggen.NewGenerator(regex)
	if err != nil {
		panic(err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(regex))
	counter++
	g.SetSeed(int64(h.Sum64()) ^ (counter * 7919))
	return g.Generate(1)
}
