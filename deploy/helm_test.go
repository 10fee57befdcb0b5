package deploy

// deploy/helm/values.yaml for the official CoreDNS chart (coredns/helm): the
// keys it sets, decoded strictly against the chart's shape for them, and the
// Corefile the chart's templates/configmap.yaml makes of servers[].

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

type helmValues struct {
	Image struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
	} `json:"image"`
	Servers []struct {
		Zones []struct {
			Zone   string `json:"zone"`
			Scheme string `json:"scheme"`
			UseTCP bool   `json:"use_tcp"`
		} `json:"zones"`
		Port    int `json:"port"`
		Plugins []struct {
			Name        string `json:"name"`
			Parameters  scalar `json:"parameters"`
			ConfigBlock string `json:"configBlock"`
		} `json:"plugins"`
	} `json:"servers"`
}

// scalar is a value the chart prints as it is: a string or a number (cache's 30).
type scalar string

func (s *scalar) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		*s = scalar(v)
	case float64:
		*s = scalar(fmt.Sprint(v))
	default:
		return fmt.Errorf("parameters %s: want a string or a number", b)
	}
	return nil
}

func readHelmValues(t *testing.T) helmValues {
	t.Helper()
	var v helmValues
	readYAML(t, "helm/values.yaml", &v, yaml.UnmarshalStrict)
	return v
}

// helmCorefile renders servers[] the way the chart's configmap template does:
// per server its zones (scheme + zone, "." by default) and :port, then each
// plugin's name, parameters and configBlock.
func helmCorefile(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, s := range readHelmValues(t).Servers {
		var keys []string
		for _, z := range s.Zones {
			keys = append(keys, z.Scheme+orDefault(z.Zone, "."))
		}
		b.WriteString(orDefault(strings.Join(keys, " "), "."))
		if s.Port != 0 {
			fmt.Fprintf(&b, ":%d", s.Port)
		}
		b.WriteString(" {\n")
		for _, p := range s.Plugins {
			b.WriteString("    " + strings.TrimSpace(p.Name+" "+string(p.Parameters)))
			if p.ConfigBlock != "" {
				b.WriteString(" {\n        " + strings.ReplaceAll(p.ConfigBlock, "\n", "\n        ") + "\n    }")
			}
			b.WriteString("\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// orDefault is s, or def when s is empty (the template's default).
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestHelmValues(t *testing.T) {
	v := readHelmValues(t)
	if v.Image.Repository+":"+v.Image.Tag != "registry.example.com/minttl/coredns:v1.13.1-minttl" {
		t.Errorf("image %s:%s", v.Image.Repository, v.Image.Tag)
	}
	corefile := helmCorefile(t)
	if !strings.Contains(corefile, "    minttl linkerd.svc.cluster.local {\n        floor 31s\n") || !strings.Contains(corefile, ".:53 {\n") {
		t.Errorf("the chart would render:\n%s", corefile)
	}
}

// TestHelmConfigMap renders the ConfigMap the chart's templates/configmap.yaml
// makes of the values, installed as README.md says (release coredns in
// kube-system). With MINTTL_HELM_CONFIGMAP set it writes it there: the lab's
// API server test (lab/kube) has the API server dry-run it.
func TestHelmConfigMap(t *testing.T) {
	cm := corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system", Labels: map[string]string{
			"app.kubernetes.io/instance": "coredns", "app.kubernetes.io/name": "coredns", "k8s-app": "coredns",
		}},
		Data: map[string]string{"Corefile": helmCorefile(t)},
	}
	text, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	var back corev1.ConfigMap
	if err := yaml.UnmarshalStrict(text, &back); err != nil || back.Data["Corefile"] != cm.Data["Corefile"] {
		t.Fatalf("the ConfigMap does not survive YAML (%v):\n%s", err, text)
	}
	if path := os.Getenv("MINTTL_HELM_CONFIGMAP"); path != "" {
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
