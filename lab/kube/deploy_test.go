package kube_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kubectl runs the control plane's kubectl in deploy/ (apply -k uses the
// kustomize built into it) and returns what it printed.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := controlPlane.Kubectl(context.Background(), deploy, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dryRun has the API server validate manifests (a kustomization with -k, a
// file with -f) as a server-side apply, every field checked strictly, nothing
// stored; each object must be reported as applied.
func dryRun(t *testing.T, source string, objects int, args ...string) {
	t.Helper()
	out := kubectl(t, append([]string{"apply", "--server-side", "--dry-run=server"}, args...)...)
	if got := strings.Count(out, "(server dry run)"); got != objects {
		t.Errorf("%s: %d objects accepted, want %d:\n%s", source, got, objects, out)
	}
}

// TestOverlaysAccepted: every overlay of deploy/ (nodelocaldns with the three
// placeholders filled as its kustomization says) and the ConfigMap the Helm
// values render pass the API server's validation.
func TestOverlaysAccepted(t *testing.T) {
	dryRun(t, "kubeadm/stock", 2, "-k", "kubeadm/stock")
	dryRun(t, "kubeadm", 2, "-k", "kubeadm")
	dryRun(t, "kubeadm-observe", 2, "-k", "kubeadm-observe")
	dryRun(t, "nodelocaldns", 3, "-f", nodeLocalDNS(t))
	dryRun(t, "helm", 1, "-f", helmConfigMap(t))
}

// nodeLocalDNS renders deploy/nodelocaldns and fills in what the operator
// fills in (NodeLocal DNSCache's docs): the link-local address, the cluster
// domain and kube-dns's ClusterIP, read from the live Service.
func nodeLocalDNS(t *testing.T) string {
	t.Helper()
	svc, err := controlPlane.Client.CoreV1().Services("kube-system").Get(context.Background(), "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer("__PILLAR__LOCAL__DNS__", "169.254.20.10", "__PILLAR__DNS__DOMAIN__", "cluster.local",
		"__PILLAR__DNS__SERVER__", svc.Spec.ClusterIP).Replace(kubectl(t, "kustomize", "nodelocaldns"))
	path := filepath.Join(t.TempDir(), "nodelocaldns.yaml")
	if err := os.WriteFile(path, []byte(filled), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmConfigMap is the ConfigMap deploy's own test renders from the Helm
// values (deploy/helm_test.go), written to a file for the dry run: the same
// rendering, not a second one.
func helmConfigMap(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helm-configmap.yaml")
	test := exec.Command("go", "test", "-count=1", "-run", "^TestHelmConfigMap$", ".")
	// Built as make deploy-test builds it (cgo as the machine has it, where the
	// lab has none), so the two share the build cache.
	env := slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "CGO_ENABLED=") })
	test.Dir, test.Env = deploy, append(env, "MINTTL_HELM_CONFIGMAP="+path)
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("deploy's TestHelmConfigMap: %v\n%s", err, out)
	}
	return path
}

// TestDryRunRefuses: the dry run is a check that can fail. A Deployment with
// a misspelt field is refused.
func TestDryRunRefuses(t *testing.T) {
	rendered := kubectl(t, "kustomize", "kubeadm")
	broken := strings.Replace(rendered, "\n  replicas: 2\n", "\n  replicas: 2\n  replica: 2\n", 1)
	if broken == rendered {
		t.Fatalf("no replicas: 2 in the rendered overlay:\n%s", rendered)
	}
	path := filepath.Join(t.TempDir(), "broken.yaml")
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := controlPlane.Kubectl(context.Background(), deploy, "apply", "--server-side", "--dry-run=server", "-f", path)
	if err == nil || !strings.Contains(out, "replica") {
		t.Errorf("a Deployment with an unknown field passed the dry run (%v):\n%s", err, out)
	}
}

// TestApplyAndRollBack applies as docs/deploying-to-kubernetes.md says, for
// real: kubeadm's stock objects, the observe_only overlay, the raise, the
// raise off again, and the roll back to stock; switching between observing
// and raising must change the ConfigMap alone (no new pod template, no
// restart), and the ConfigMap and the Deployment must end as they were after
// the first apply.
//
// The overlay adds no field kubeadm's objects lack: it changes two values
// (the image, the Corefile), which any apply puts back. Whether client-side
// apply's three-way merge also removes what an overlay adds is checked with
// one that adds: a pod template annotation and a ConfigMap key on top of
// deploy/kubeadm. It does: both fields are in the last-applied annotation,
// not in stock's manifests, so the roll back deletes them.
func TestApplyAndRollBack(t *testing.T) {
	kubectl(t, "apply", "-k", "kubeadm/stock")
	stock := live(t)

	kubectl(t, "apply", "-k", "kubeadm-observe")
	observing := live(t)
	kubectl(t, "apply", "-k", "kubeadm")
	overlay := live(t)
	if !reflect.DeepEqual(observing.deployment, overlay.deployment) || observing.configMap.Data["Corefile"] == overlay.configMap.Data["Corefile"] {
		t.Error("switching observe_only off changed more than the ConfigMap's Corefile")
	}
	kubectl(t, "apply", "-k", "kubeadm-observe")
	if back := live(t); !reflect.DeepEqual(back, observing) {
		t.Error("switching the raise off again did not give back the observe_only objects")
	}
	kubectl(t, "apply", "-k", "kubeadm")
	corefile, err := os.ReadFile(filepath.Join(deploy, "kubeadm", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	if overlay.configMap.Data["Corefile"] != string(corefile) {
		t.Errorf("the live Corefile is not deploy/kubeadm/Corefile:\n%s", overlay.configMap.Data["Corefile"])
	}
	if image := overlay.deployment.Spec.Template.Spec.Containers[0].Image; image == stock.deployment.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("the overlay left kubeadm's image %s", image)
	}

	kubectl(t, "apply", "-k", "kubeadm/stock")
	stock.same(t, live(t), "after the roll back from deploy/kubeadm")

	kubectl(t, "apply", "-k", addingOverlay(t))
	added := live(t)
	if added.deployment.Spec.Template.Annotations["minttl.lab/added"] == "" || added.configMap.Data["added"] == "" {
		t.Fatalf("the adding overlay did not add its fields: %v %v", added.deployment.Spec.Template.Annotations, added.configMap.Data)
	}
	kubectl(t, "apply", "-k", "kubeadm/stock")
	stock.same(t, live(t), "after the roll back from an overlay that adds fields")
}

// addingOverlay is deploy/kubeadm plus a pod template annotation and a
// ConfigMap key, in a temporary kustomization.
func addingOverlay(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	base, err := filepath.Abs(filepath.Join(deploy, "kubeadm"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	kustomization := `resources:
- ` + rel + `
patches:
- patch: |
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: coredns, namespace: kube-system}
    spec: {template: {metadata: {annotations: {minttl.lab/added: "yes"}}}}
- patch: |
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: coredns, namespace: kube-system}
    data: {added: "yes"}
`
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// objects are the live coredns ConfigMap and Deployment, without what the API
// server writes on every change (resourceVersion, generation, uid,
// creationTimestamp, managedFields) and kubectl's last-applied annotation.
type objects struct {
	configMap  *corev1.ConfigMap
	deployment *appsv1.Deployment
}

func live(t *testing.T) objects {
	t.Helper()
	ctx := context.Background()
	cm, err := controlPlane.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := controlPlane.Client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	normalize(&cm.ObjectMeta)
	normalize(&d.ObjectMeta)
	return objects{cm, d}
}

func normalize(m *metav1.ObjectMeta) {
	m.ResourceVersion, m.Generation, m.UID, m.CreationTimestamp, m.ManagedFields = "", 0, "", metav1.Time{}, nil
	delete(m.Annotations, corev1.LastAppliedConfigAnnotation)
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
}

// same fails the test unless got equals o, showing both.
func (o objects) same(t *testing.T, got objects, when string) {
	t.Helper()
	for _, pair := range [][2]any{{o.configMap, got.configMap}, {o.deployment, got.deployment}} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			want, _ := yaml.Marshal(pair[0])
			have, _ := yaml.Marshal(pair[1])
			t.Errorf("%s the live object differs from kubeadm's:\n%s\nwant:\n%s", when, have, want)
		}
	}
}
