package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/minttl/minttl/lab/internal/kube"
)

// The kube scenarios: kube-dns is CoreDNS's kubernetes plugin reading a real
// kube-apiserver, with a cluster's Corefile rewritten to run here. Their
// Corefiles come from deploy/ where deploy/ has them, so the lab runs what
// users apply.
var kubeScenarios = []scenario{
	{name: "kube_kubeadm", kube: deployCorefile("kubeadm/stock/coredns.yaml"), zoneTTL: 30,
		describe: "kubeadm: `ttl 30`, cluster.local not cached"},
	{name: "kube_kubeadm_minttl", kube: deployCorefile("kubeadm/Corefile"), zoneTTL: 30,
		describe: "kubeadm + minttl as deploy/kubeadm"},
	{name: "kube_eks", kube: testdataCorefile("kube_eks.Corefile"),
		describe: "EKS/k3s: ttl 5 behind `cache 30`"},
	{name: "kube_eks_minttl", kube: testdataCorefile("kube_eks_minttl.Corefile"),
		describe: "EKS/k3s + minttl at its defaults"},
}

func init() { scenarios = append(scenarios, kubeScenarios...) }

// A kube scenario's Corefile: a file of deploy/ (a manifest's ConfigMap, or a
// Corefile), or of testdata/storm.
type corefileSource func(cfg config) (string, error)

func deployCorefile(path string) corefileSource {
	return func(cfg config) (string, error) {
		full := filepath.Join(cfg.kube.deploy, path)
		if filepath.Ext(path) == ".yaml" {
			return kube.ManifestCorefile(full)
		}
		text, err := os.ReadFile(full)
		return string(text), err
	}
}

func testdataCorefile(name string) corefileSource {
	return func(cfg config) (string, error) {
		text, err := os.ReadFile(filepath.Join(cfg.testdata, "storm", name))
		return string(text), err
	}
}

// kubeLab is what the kube scenarios of a run share: one control plane with
// Linkerd's objects, and the rolling update that churns them.
type kubeLab struct {
	bin, deploy string
	churn       time.Duration
	plane       *kube.ControlPlane
	linkerd     *kube.Linkerd
	log         *churnLog
}

func kubeFlags(k *kubeLab) {
	flag.StringVar(&k.bin, "controlplane", ".bin/controlplane", "folder of etcd, kube-apiserver and kubectl (make controlplane), for the kube_* scenarios")
	flag.StringVar(&k.deploy, "deploy", "deploy", "the deploy folder, whose Corefiles the kube_* scenarios run")
	flag.DurationVar(&k.churn, "churn", 0, "kube_* scenarios: replace a linkerd-destination pod this often, as a rolling update does, and measure how long proxies take to see the new one (0: never)")
}

// Rolling update timing: the new pod's readiness probe passes readyAfter after
// it appears; the old pod stays terminating for half the churn interval.
const readyAfter = time.Second

// startKube starts the control plane and the rolling update if a unit needs
// them; stop ends both.
func startKube(ctx context.Context, cfg *config, us []unit) (stop func(), err error) {
	if !slices.ContainsFunc(us, func(u unit) bool { return u.kube != nil }) {
		return func() {}, nil
	}
	k := &cfg.kube
	bin, err := kube.Binaries(k.bin)
	if err != nil {
		return nil, err
	}
	if k.plane, err = kube.Start(ctx, bin); err != nil {
		return nil, err
	}
	if k.linkerd, err = kube.WriteLinkerd(ctx, k.plane.Client); err != nil {
		k.plane.Stop()
		return nil, err
	}
	k.log = &churnLog{}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if k.churn > 0 {
		wg.Go(func() { k.roll(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
		k.plane.Stop()
	}, nil
}

// roll replaces a linkerd-destination pod every k.churn until ctx ends.
func (k *kubeLab) roll(ctx context.Context) {
	tick := time.NewTicker(k.churn)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		step, err := k.linkerd.Roll(ctx, "linkerd-destination", readyAfter)
		if err == nil {
			k.log.add(step)
			if sleepUntil(ctx, time.Now().Add(k.churn/2)) {
				err = k.linkerd.Remove(ctx, step)
			}
		}
		if err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "stormlab: rolling update:", err)
		}
	}
}

// startKubeDNS starts the unit's kube-dns replicas with its Corefile, reading
// the control plane, and the watch of its proxies' staleness.
func (c *cluster) startKubeDNS(ctx context.Context, cfg config, u unit) error {
	corefile, err := u.kube(cfg)
	if err != nil {
		return err
	}
	floor, jitter, err := kube.Minttl(corefile)
	if err != nil {
		return err
	}
	c.churn = newChurnWatch(cfg.kube.log, floor, jitter, uint32(u.validity()/time.Second))
	for r := range u.replicas {
		dir := filepath.Join(c.dir, fmt.Sprintf("kube-dns-%d", r))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		p, l, err := kube.RunCoreDNS(ctx, cfg.coredns, dir, corefile, cfg.kube.plane.Kubeconfig)
		if err != nil {
			return err
		}
		c.kubeDNS, c.replicas = append(c.kubeDNS, p), append(c.replicas, l.Addr())
	}
	return nil
}
