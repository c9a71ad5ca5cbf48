package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// median of xs (the mean of the two middle values for an even count); 0 for none.
func median(xs []float64) float64 { return percentile(xs, 50) }

// percentile p (0-100) of xs by the nearest-rank method; 0 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func secs(d time.Duration) float64 { return d.Seconds() }

func fmtSecs(s float64) string { return fmt.Sprintf("%.2f s", s) }

func fmtMs(s float64) string { return fmt.Sprintf("%.2f ms", s*1000) }

func fmtMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// fmtBytes gives an exact count with a readable size beside it.
func fmtBytes(b int64) string {
	if b < 10_000 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%d B (%.1f MB)", b, float64(b)/1e6)
}

func ratio(ours, base float64) string {
	if base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", ours/base)
}

// verdict says plainly whether a target was met.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**MISSED**"
}

func msList(xs []float64) string {
	var ms []float64
	for _, x := range xs {
		ms = append(ms, x*1000)
	}
	return list(ms) + " ms"
}

// medianDiffInterval is a 95% bootstrap interval for median(a) − median(b): 1000 resamples of each, with
// a fixed seed so that the same samples give the same interval.
func medianDiffInterval(a, b []float64) (lo, hi float64) {
	if len(a) == 0 || len(b) == 0 {
		return 0, 0
	}
	rng := rand.New(rand.NewPCG(1, 2))
	resample := func(xs, into []float64) []float64 {
		into = into[:0]
		for range xs {
			into = append(into, xs[rng.IntN(len(xs))])
		}
		return into
	}
	var ra, rb []float64
	diffs := make([]float64, 0, 1000)
	for range 1000 {
		ra, rb = resample(a, ra), resample(b, rb)
		diffs = append(diffs, median(ra)-median(rb))
	}
	return percentile(diffs, 2.5), percentile(diffs, 97.5)
}
