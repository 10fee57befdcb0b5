package deploy

// The kustomize overlays rendered as kubectl apply -k renders them, every object
// decoded strictly (an unknown or duplicate field fails) into its Kubernetes API type.

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// rendered is what an overlay renders to, by kind and name.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	configMaps  map[string]*corev1.ConfigMap
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	r := rendered{map[string]*appsv1.Deployment{}, map[string]*corev1.ConfigMap{}}
	for _, res := range resources.Resources() {
		text, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var obj interface{ GetNamespace() string }
		switch kind := res.GetGvk().ApiVersion() + " " + res.GetKind(); kind {
		case "apps/v1 Deployment":
			d := new(appsv1.Deployment)
			r.deployments[res.GetName()], obj = d, d
		case "v1 ConfigMap":
			c := new(corev1.ConfigMap)
			r.configMaps[res.GetName()], obj = c, c
		default:
			t.Fatalf("%s renders a %s, which this test does not know", dir, kind)
		}
		if err := yaml.UnmarshalStrict(text, obj); err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", dir, res.GetKind(), res.GetName(), err, text)
		}
		if obj.GetNamespace() != "kube-system" {
			t.Errorf("%s: %s %s in namespace %q, want kube-system", dir, res.GetKind(), res.GetName(), obj.GetNamespace())
		}
	}
	return r
}

// corefile is the Corefile of a rendered ConfigMap.
func (r rendered) corefile(t *testing.T, configMap string) string {
	t.Helper()
	c, ok := r.configMaps[configMap]
	if !ok || c.Data["Corefile"] == "" {
		t.Fatalf("no ConfigMap %s with a Corefile", configMap)
	}
	return c.Data["Corefile"]
}

const ourImage = "registry.example.com/minttl/coredns:v1.12.1-minttl"

// TestKubeadmOverlay: the overlay changes kubeadm's coredns in two places only,
// the image and the Corefile, and the Deployment still mounts that Corefile and
// may bind port 53.
func TestKubeadmOverlay(t *testing.T) {
	stock, overlay := render(t, "kubeadm/stock"), render(t, "kubeadm")
	if len(overlay.deployments) != 1 || len(overlay.configMaps) != 1 {
		t.Fatalf("deploy/kubeadm renders %d Deployments and %d ConfigMaps, want 1 and 1", len(overlay.deployments), len(overlay.configMaps))
	}
	d := overlay.deployments["coredns"]
	if d == nil {
		t.Fatal("no Deployment coredns")
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != ourImage {
		t.Errorf("image %q, want %q", c.Image, ourImage)
	}
	if !slices.Equal(c.Args, []string{"-conf", "/etc/coredns/Corefile"}) || c.VolumeMounts[0].MountPath != "/etc/coredns" ||
		d.Spec.Template.Spec.Volumes[0].ConfigMap.Name != "coredns" || d.Spec.Template.Spec.Volumes[0].ConfigMap.Items[0].Key != "Corefile" {
		t.Errorf("the Deployment does not run /etc/coredns/Corefile from ConfigMap coredns: %v %+v", c.Args, d.Spec.Template.Spec.Volumes)
	}
	if c.SecurityContext == nil || !slices.Contains(c.SecurityContext.Capabilities.Add, "NET_BIND_SERVICE") {
		t.Error("the container lost NET_BIND_SERVICE, which the binary's file capability needs in the bounding set")
	}

	before, after := stock.corefile(t, "coredns"), overlay.corefile(t, "coredns")
	if !strings.Contains(after, "minttl linkerd.svc.cluster.local {") {
		t.Errorf("the Corefile has no minttl for the Linkerd names:\n%s", after)
	}
	if got := withoutMinttl(after); got != before {
		t.Errorf("the Corefile differs from kubeadm's by more than minttl:\n%s\nkubeadm's:\n%s", got, before)
	}
	stockDeployment := stock.deployments["coredns"].DeepCopy()
	stockDeployment.Spec.Template.Spec.Containers[0].Image = ourImage
	if !reflect.DeepEqual(stockDeployment, d) {
		t.Errorf("the Deployment differs from kubeadm's by more than the image")
	}
}

// TestObserveOverlay: the rollout's first step is deploy/kubeadm with one
// line more, observe_only in minttl's block; the Deployment is the same, so
// switching between the two changes only the ConfigMap, which the reload
// plugin picks up without a restart.
func TestObserveOverlay(t *testing.T) {
	raise, observe := render(t, "kubeadm"), render(t, "kubeadm-observe")
	if !reflect.DeepEqual(raise.deployments, observe.deployments) || len(observe.configMaps) != 1 {
		t.Fatal("deploy/kubeadm-observe's Deployment differs from deploy/kubeadm's")
	}
	var dropped []string
	for _, line := range strings.Split(observe.corefile(t, "coredns"), "\n") {
		if trimmed := strings.TrimSpace(line); trimmed == "observe_only" || strings.HasPrefix(trimmed, "#") {
			dropped = append(dropped, trimmed)
			continue
		}
		if !strings.Contains(raise.corefile(t, "coredns"), line) {
			t.Errorf("deploy/kubeadm-observe's Corefile has a line deploy/kubeadm's lacks: %q", line)
		}
	}
	if !slices.Contains(dropped, "observe_only") {
		t.Errorf("deploy/kubeadm-observe's Corefile has no observe_only")
	}
	if withoutMinttl(observe.corefile(t, "coredns")) != withoutMinttl(raise.corefile(t, "coredns")) {
		t.Error("the two Corefiles differ outside minttl's block")
	}
}

// withoutMinttl drops the minttl directive, its block and the comment above it.
func withoutMinttl(corefile string) string {
	var kept []string
	lines := strings.Split(corefile, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "minttl"):
			for strings.HasSuffix(line, "{") && strings.TrimSpace(lines[i]) != "}" {
				i++
			}
			continue
		}
		kept = append(kept, lines[i])
	}
	return strings.Join(kept, "\n")
}

// TestNodeLocalOverlay: kube-dns as in deploy/kubeadm, plus node-local-dns's
// ConfigMap whose cluster.local cache keeps TTLs up to minttl's floor + jitter.
func TestNodeLocalOverlay(t *testing.T) {
	kubeadm, nodelocal := render(t, "kubeadm"), render(t, "nodelocaldns")
	if !reflect.DeepEqual(kubeadm.deployments, nodelocal.deployments) || nodelocal.corefile(t, "coredns") != kubeadm.corefile(t, "coredns") {
		t.Error("deploy/nodelocaldns's kube-dns differs from deploy/kubeadm's")
	}
	corefile := nodelocal.corefile(t, "node-local-dns")
	m := minttlOf(t, kubeadm.corefile(t, "coredns"))
	if cap := fmt.Sprintf("success 9984 %d", m.floor+m.jitter); strings.Count(corefile, cap) != 1 {
		t.Errorf("node-local-dns Corefile has %d caches with %s (minttl's floor + jitter), want 1 (cluster.local's):\n%s", strings.Count(corefile, cap), cap, corefile)
	}
	if len(nodelocal.configMaps) != 2 {
		t.Errorf("deploy/nodelocaldns renders ConfigMaps %v, want coredns and node-local-dns", slices.Collect(maps.Keys(nodelocal.configMaps)))
	}
}
