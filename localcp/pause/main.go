// The Pods' sandbox ("pause") process: it holds the Pod's namespaces and waits.
// No registry is reachable here, so the image is built locally from this source and
// tagged with the name containerd and kubelet use for the sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of a Pod that shares its process namespace, reap orphans.
	signal.Notify(signals, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
