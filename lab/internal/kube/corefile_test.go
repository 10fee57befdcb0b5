package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMinttl reads floor and jitter as minttl's setup does: a block's values,
// the defaults without one, nothing without minttl.
func TestMinttl(t *testing.T) {
	for _, c := range []struct {
		corefile      string
		floor, jitter uint32
	}{
		{".:53 {\n    minttl linkerd.svc.cluster.local {\n       floor 31s\n\n       jitter 9s\n    }\n    cache 30\n}", 31, 9},
		{".:53 {\n    minttl linkerd.svc.cluster.local {\n       floor 40s\n       jitter 50%\n    }\n}", 40, 20},
		{".:53 {\n    cache 30\n}", 0, 0},
	} {
		floor, jitter, err := Minttl(c.corefile)
		if err != nil || floor != c.floor || jitter != c.jitter {
			t.Errorf("%q: %d, %d (%v), want %d, %d", c.corefile, floor, jitter, err, c.floor, c.jitter)
		}
	}
	if floor, jitter, err := Minttl(".:53 {\n    minttl\n}"); err != nil || floor == 0 || jitter == 0 {
		t.Errorf("minttl's defaults: %d, %d (%v)", floor, jitter, err)
	}
}

// TestRewrite: deploy/kubeadm's Corefile keeps every line but those that must
// change to run here.
func TestRewrite(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "kubeadm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	l := Loopback{DNS: "1053", Health: "1054", Ready: "1055", Metrics: "1056", Forward: "127.0.0.1:1057", Kubeconfig: "/lab/kubeconfig"}
	got, err := l.Rewrite(string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".:1053 {\n    bind 127.0.0.1\n", "health 127.0.0.1:1054 {\n", "ready 127.0.0.1:1055\n",
		"prometheus 127.0.0.1:1056\n", "forward . 127.0.0.1:1057 {\n", "kubernetes cluster.local in-addr.arpa ip6.arpa {\n       kubeconfig /lab/kubeconfig\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, ":53") || strings.Contains(got, "/etc/resolv.conf") {
		t.Errorf("a cluster address is left:\n%s", got)
	}
	if strings.Count(got, "\n") != strings.Count(string(text), "\n")+2 {
		t.Errorf("more changed than bind and kubeconfig added:\n%s", got)
	}
	if _, err := l.Rewrite(".:53 {\n    cache 30 {\n}"); err == nil {
		t.Error("a block left open was rewritten")
	}
}
