// Command coredns is CoreDNS with the plugins a Kubernetes cluster DNS Corefile uses as its only directives.
//
// It is CoreDNS's own main (coredns.go: coremain.Run) without core/plugin, the package that links
// every plugin; the directives below keep upstream's execution order (core/dnsserver/zdirectives.go).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives is upstream's list reduced to the plugins imported above, in the same order: the order
// a query passes through them, whatever order the Corefile names them in.
var directives = []string{
	"reload",
	"ready",
	"health",
	"prometheus", // plugin/metrics
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
	"forward",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		panic(err)
	}
	coremain.Run()
}
