package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// percentile returns the p-quantile (0 < p ≤ 1) of d by the nearest-rank
// method: the smallest sample with at least p of the samples at or below
// it. It returns 0 for no samples. d is not modified.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[rankIndex(len(s), p)]
}

// rankIndex is the index of the p-quantile in n sorted samples.
func rankIndex(n int, p float64) int {
	i := int(math.Ceil(p*float64(n))) - 1
	return min(max(i, 0), n-1)
}

// ms converts a duration to (fractional) milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyFigures returns p50, p99 and max of d in milliseconds, under keys
// prefix+"p50_ms" and so on, and the sample count.
func latencyFigures(prefix string, d []time.Duration) []Figure {
	s := slices.Clone(d)
	slices.Sort(s)
	f := []Figure{
		{Key: prefix + "p50_ms", Unit: "ms"},
		{Key: prefix + "p99_ms", Unit: "ms"},
		{Key: prefix + "max_ms", Unit: "ms"},
	}
	if len(s) == 0 {
		for i := range f {
			f[i].NA = true
		}
		return f
	}
	f[0].Value = ms(s[rankIndex(len(s), 0.50)])
	f[1].Value = ms(s[rankIndex(len(s), 0.99)])
	f[2].Value = ms(s[len(s)-1])
	return f
}

// spread is the median, minimum and maximum of a figure across runs.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// summarize returns the median (the mean of the two middle values for an
// even count), minimum and maximum of v. ok is false for no values.
func summarize(v []float64) (s spread, ok bool) {
	if len(v) == 0 {
		return spread{}, false
	}
	x := slices.Clone(v)
	slices.Sort(x)
	n := len(x)
	s = spread{Min: x[0], Max: x[n-1], N: n}
	if n%2 == 1 {
		s.Median = x[n/2]
	} else {
		s.Median = (x[n/2-1] + x[n/2]) / 2
	}
	return s, true
}

// formatNum prints v with few significant decimals: 5612, 48.3, 0.64.
func formatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// String formats a spread as "median [min..max]", or just the value when
// all runs agree or there was one run.
func (s spread) String() string {
	if s.N <= 1 || s.Min == s.Max {
		return formatNum(s.Median)
	}
	return fmt.Sprintf("%s [%s..%s]", formatNum(s.Median), formatNum(s.Min), formatNum(s.Max))
}
