package main

import (
	"math/rand/v2"
	"testing"
)

func TestMedianDiffInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	noisy := func(n int, shift float64) []float64 {
		var xs []float64
		for range n {
			xs = append(xs, 20+shift+rng.NormFloat64()*5)
		}
		return xs
	}
	base := noisy(400, 0)
	for _, tt := range []struct {
		name  string
		shift float64
	}{{"no overhead", 0}, {"3 units", 3}, {"-2 units", -2}} {
		lo, hi := medianDiffInterval(noisy(400, tt.shift), base)
		if lo > tt.shift || hi < tt.shift || hi-lo > 3 {
			t.Errorf("%s: interval %.2f to %.2f; want one under 3 wide around %.0f", tt.name, lo, hi, tt.shift)
		}
		if (tt.shift != 0) && lo < 0 && hi > 0 {
			t.Errorf("%s: interval %.2f to %.2f includes 0 for a shift of %.0f", tt.name, lo, hi, tt.shift)
		}
	}
	if lo, hi := medianDiffInterval(nil, base); lo != 0 || hi != 0 {
		t.Errorf("no samples: %v, %v; want 0, 0", lo, hi)
	}
}
