package main

import (
	"fmt"
	"sort"
	"strings"
)

// insecureOptions are the checks --insecure-options can skip. Each one skipped
// is announced on stderr every time.
var insecureOptions = map[string]string{
	"image":   "image signature verification",
	"tls":     "TLS certificate verification",
	"http":    "the refusal of plain HTTP",
	"seccomp": "the apps' seccomp filters",
	"paths":   "masked and read-only /proc and /sys paths in the apps",
	"all":     "every check above",
}

func insecureNames() []string {
	var n []string
	for k := range insecureOptions {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// insecure is the parsed --insecure-options set.
type insecure map[string]bool

func parseInsecure(s string) (insecure, error) {
	in := insecure{}
	if s == "" {
		return in, nil
	}
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if _, ok := insecureOptions[o]; !ok {
			return nil, fmt.Errorf("--insecure-options: unknown option %q; known: %s", o, strings.Join(insecureNames(), ", "))
		}
		if o == "all" {
			for k := range insecureOptions {
				in[k] = true
			}
		}
		in[o] = true
	}
	return in, nil
}

func (in insecure) skips(check string) bool { return in[check] || in["all"] }
