package testkit

import (
	"bytes"
	"strconv"
)

// Metric finds one sample in a Prometheus text exposition (a /metrics
// body): name includes the labels as Prometheus writes them, e.g.
// `jobs_total{kind="a"}`. ok is false when there is no such sample.
func Metric(body []byte, name string) (value float64, ok bool) {
	prefix := []byte(name + " ")
	for line := range bytes.Lines(body) {
		if v, found := bytes.CutPrefix(bytes.TrimRight(line, "\n"), prefix); found {
			f, err := strconv.ParseFloat(string(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
