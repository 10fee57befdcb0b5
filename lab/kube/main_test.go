// Package kube_test runs deploy/ against a real control plane (etcd and
// kube-apiserver from make controlplane): deploy/kubeadm's Corefile served by
// CoreDNS's kubernetes plugin from real API objects, and every overlay
// accepted, applied and rolled back by the API server.
package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/minttl/minttl/lab/internal/kube"
	"github.com/minttl/minttl/lab/internal/lab"
)

var (
	controlPlane *kube.ControlPlane
	linkerd      *kube.Linkerd
)

// deploy is deploy/ at the top of the checkout.
var deploy = filepath.Join("..", "..", "deploy")

// TestMain starts one control plane for the package's tests, with Linkerd's
// Services and kube-dns written, and stops it when they are done. Without the
// binaries the tests fail: make test builds them first.
func TestMain(m *testing.M) { os.Exit(withControlPlane(m)) }

func withControlPlane(m *testing.M) int {
	bin, err := kube.Binaries(filepath.Join("..", "..", ".bin", "controlplane"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if controlPlane, err = kube.Start(ctx, bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer controlPlane.Stop()
	if linkerd, err = kube.WriteLinkerd(ctx, controlPlane.Client); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return lab.Main(m)
}
