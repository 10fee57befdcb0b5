package kube_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/kube"
	"github.com/minttl/minttl/lab/internal/lab"
)

// The SRV names of Linkerd's headless Services, and the Deployment behind each.
var linkerdNames = map[string]string{
	"linkerd-dst-headless.linkerd.svc.cluster.local.":      "linkerd-destination",
	"linkerd-policy.linkerd.svc.cluster.local.":            "linkerd-destination",
	"linkerd-identity-headless.linkerd.svc.cluster.local.": "linkerd-identity",
}

// kubeDNS serves deploy/kubeadm's Corefile, rewritten only to run here: its
// ports on loopback, the kubernetes plugin reading the control plane through
// a kubeconfig, forward to a closed port.
type kubeDNS struct {
	kube.Loopback
	corefile      string
	floor, jitter uint32
}

func startKubeadm(t *testing.T) kubeDNS {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(deploy, "kubeadm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	s := kubeDNS{corefile: string(text)}
	if s.floor, s.jitter, err = kube.Minttl(s.corefile); err != nil || s.floor == 0 {
		t.Fatalf("deploy/kubeadm/Corefile: minttl floor %d (%v)", s.floor, err)
	}
	p, l, err := kube.RunCoreDNS(context.Background(), lab.CoreDNS, t.TempDir(), s.corefile, controlPlane.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	s.Loopback = l
	return s
}

// dig asks for name's SRV records from src with the real dig, over UDP or TCP,
// and returns the answer and additional sections.
func (s kubeDNS) dig(t *testing.T, src, name string, tcp bool) (answer []*dns.SRV, additional []*dns.A) {
	t.Helper()
	args := []string{"SRV", name, "+noall", "+answer", "+additional"}
	if tcp {
		args = append(args, "+tcp")
	}
	out, err := lab.Dig("127.0.0.1", s.DNS, src, args...)
	if err != nil {
		t.Fatal(err)
	}
	rrs, err := lab.ParseRRs(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.SRV:
			answer = append(answer, rr)
		case *dns.A:
			additional = append(additional, rr)
		default:
			t.Fatalf("%s from %s: unexpected record %s", name, src, rr)
		}
	}
	return answer, additional
}

// targets are the names the kubernetes plugin gives pods without a hostname:
// their IP with dashes, under the Service's name.
func targets(name string, pods []kube.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, strings.ReplaceAll(p.IP, ".", "-")+"."+name)
	}
	slices.Sort(out)
	return out
}

// problem says what is wrong with an answer for name: its SRV targets must be
// pods' and the additional section their A records, every record at the same
// TTL, which must lie in floor..floor+jitter; "" if nothing is.
func (s kubeDNS) problem(name string, pods []kube.Pod, answer []*dns.SRV, additional []*dns.A) string {
	var got, ips []string
	for _, srv := range answer {
		got = append(got, srv.Target)
	}
	for _, a := range additional {
		ips = append(ips, strings.ReplaceAll(a.A.String(), ".", "-")+"."+name)
	}
	slices.Sort(got)
	slices.Sort(ips)
	if want := targets(name, pods); !slices.Equal(got, want) || !slices.Equal(ips, want) {
		return fmt.Sprintf("targets %v, A records for %v, want %v", got, ips, want)
	}
	ttl := answer[0].Hdr.Ttl
	for _, rr := range answer {
		if rr.Hdr.Ttl != ttl {
			return fmt.Sprintf("more than one TTL: %s", rr)
		}
	}
	for _, rr := range additional {
		if rr.Hdr.Ttl != ttl {
			return fmt.Sprintf("A record at another TTL than the SRV records (%d): %s", ttl, rr)
		}
	}
	if ttl < s.floor || ttl > s.floor+s.jitter {
		return fmt.Sprintf("TTL %d, want %d..%d", ttl, s.floor, s.floor+s.jitter)
	}
	return ""
}

// TestKubeadmServesLinkerd: deploy/kubeadm's Corefile, with the kubernetes
// plugin reading real Services and EndpointSlices, hands clients the Linkerd
// SRV names at floor..floor+jitter with the pods' A records in the additional
// section at the same TTL, over UDP and TCP, not all at one TTL; and leaves a
// name outside minttl's zone at the kubernetes plugin's ttl.
func TestKubeadmServesLinkerd(t *testing.T) {
	s := startKubeadm(t)
	ttls := map[uint32]bool{}
	for name, deployment := range linkerdNames {
		pods := linkerd.Pods(deployment)
		for client := 10; client < 18; client++ {
			for _, tcp := range []bool{false, true} {
				src := fmt.Sprintf("127.0.0.%d", client)
				answer, additional := s.dig(t, src, name, tcp)
				if p := s.problem(name, pods, answer, additional); p != "" {
					t.Fatalf("%s from %s (tcp %v): %s", name, src, tcp, p)
				}
				ttls[answer[0].Hdr.Ttl] = true
			}
		}
	}
	if len(ttls) < 2 {
		t.Errorf("48 answers to 8 clients all carried one TTL: %v", ttls)
	}

	out, err := lab.Dig("127.0.0.1", s.DNS, "127.0.0.20", "A", "kube-dns.kube-system.svc.cluster.local.", "+noall", "+answer")
	if err != nil {
		t.Fatal(err)
	}
	rrs, err := lab.ParseRRs(out)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := rrs[0].(*dns.A)
	if want := kubernetesTTL(t, s.corefile); !ok || a.A.String() != "10.96.0.10" || a.Hdr.Ttl != want {
		t.Errorf("kube-dns.kube-system: %s, want 10.96.0.10 at the kubernetes plugin's ttl %d, untouched", rrs[0], want)
	}
}

// kubernetesTTL is the ttl of the Corefile's kubernetes block.
func kubernetesTTL(t *testing.T, corefile string) uint32 {
	t.Helper()
	in := false
	for _, line := range strings.Split(corefile, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "kubernetes":
			in = true
		case in && len(f) == 2 && f[0] == "ttl":
			var ttl uint32
			fmt.Sscan(f[1], &ttl)
			return ttl
		case in && len(f) == 1 && f[0] == "}":
			in = false
		}
	}
	t.Fatalf("no ttl in the kubernetes block:\n%s", corefile)
	return 0
}

// TestEndpointSliceChange: a rolling update of linkerd-destination, written to
// the EndpointSlices through the API, reaches the answers: the new pod once it
// is ready, the old one gone once it terminates. Polled, never timed.
func TestEndpointSliceChange(t *testing.T) {
	s := startKubeadm(t)
	const name = "linkerd-dst-headless.linkerd.svc.cluster.local."
	step, err := linkerd.Roll(context.Background(), "linkerd-destination", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolled %s (%s) → %s (%s)", step.Old.Name, step.Old.IP, step.New.Name, step.New.IP)
	pods := linkerd.Pods("linkerd-destination")
	last := ""
	for try := 0; ; try++ {
		answer, additional := s.dig(t, "127.0.0.30", name, try%2 == 1)
		if last = s.problem(name, pods, answer, additional); last == "" {
			break
		}
		if try == 100 {
			t.Fatalf("after 100 tries the answer still differs from the EndpointSlice: %s", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := linkerd.Remove(context.Background(), step); err != nil {
		t.Fatal(err)
	}
	answer, additional := s.dig(t, "127.0.0.31", name, false)
	if p := s.problem(name, linkerd.Pods("linkerd-destination"), answer, additional); p != "" {
		t.Errorf("after the old pod left the slice: %s", p)
	}
}
