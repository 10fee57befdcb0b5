// Package kube runs a real Kubernetes control plane on loopback for the lab:
// etcd and kube-apiserver (built by lab/controlplane/build), no kubelet, no
// controllers. The lab writes the objects controllers would write (Services,
// EndpointSlices) through client-go, and CoreDNS's kubernetes plugin reads
// them back through a kubeconfig, as in a cluster.
package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/minttl/minttl/lab/internal/lab"
)

// BinariesEnv names the folder of etcd, kube-apiserver and kubectl; make sets it
// to .bin/controlplane (make controlplane builds them there).
const BinariesEnv = "MINTTL_CONTROLPLANE"

// Binaries is the folder of the control plane's binaries: $MINTTL_CONTROLPLANE,
// or fallback (relative to the caller's working directory). Every binary must
// be there: a test without them fails, it never skips.
func Binaries(fallback string) (string, error) {
	dir := os.Getenv(BinariesEnv)
	if dir == "" {
		dir = fallback
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("control plane binary missing (make controlplane builds %s/%s): %w", dir, name, err)
		}
	}
	return filepath.Abs(dir)
}

// ControlPlane is a running etcd and kube-apiserver, on ports of 127.0.0.1.
type ControlPlane struct {
	Server     string // https://127.0.0.1:PORT
	Kubeconfig string // a kubeconfig for the admin (group system:masters)
	Client     *kubernetes.Clientset
	bin, dir   string
	etcd, api  *lab.Process
}

// Start runs etcd and kube-apiserver from the folder bin in a new temporary
// folder and waits until the API server is ready. On error nothing is left
// running.
func Start(ctx context.Context, bin string) (*ControlPlane, error) {
	dir, err := os.MkdirTemp("", "minttl-controlplane-")
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{bin: bin, dir: dir}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *ControlPlane) start(ctx context.Context) error {
	s, err := writeSecrets(c.dir)
	if err != nil {
		return err
	}
	etcdURL, err := c.startEtcd(ctx)
	if err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, s, etcdURL); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(kubeconfig(c.Server, s)), 0o600); err != nil {
		return err
	}
	c.Client, err = kubernetes.NewForConfig(&rest.Config{
		Host:            c.Server,
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.caFile},
		// The lab writes as fast as controllers would, not throttled as one client.
		QPS: 100, Burst: 200,
	})
	if err != nil {
		return err
	}
	return c.waitForKubeSystem(ctx)
}

// waitForKubeSystem waits until the API server has created kube-system, which
// it does on its own shortly after it is ready.
func (c *ControlPlane) waitForKubeSystem(ctx context.Context) error {
	var err error
	for range 100 {
		if _, err = c.Client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("no namespace kube-system: %w", err)
}

// Stop kills kube-apiserver and etcd and removes their folder.
func (c *ControlPlane) Stop() {
	for _, p := range []*lab.Process{c.api, c.etcd} {
		if p != nil {
			p.Stop()
		}
	}
	os.RemoveAll(c.dir)
}

// Kubectl runs the control plane's kubectl against it, from the folder dir,
// and returns what it printed.
func (c *ControlPlane) Kubectl(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// startEtcd runs a one-member etcd on two free loopback ports; a port taken
// between its check and etcd's bind gives two more tries.
func (c *ControlPlane) startEtcd(ctx context.Context) (string, error) {
	var err error
	for range 3 {
		var client, peer string
		if client, err = lab.FreePort(); err != nil {
			return "", err
		}
		if peer, err = lab.FreePort(); err != nil {
			return "", err
		}
		clientURL, peerURL := "http://127.0.0.1:"+client, "http://127.0.0.1:"+peer
		c.etcd, err = lab.Start(ctx, filepath.Join(c.dir, "etcd.log"), nil, filepath.Join(c.bin, "etcd"),
			"--name=lab", "--data-dir="+filepath.Join(c.dir, "etcd"),
			"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=lab="+peerURL, "--log-level=warn")
		if err != nil {
			return "", err
		}
		if err = waitHTTP(ctx, http.DefaultClient, clientURL+"/health", "", c.etcd); err == nil {
			return clientURL, nil
		}
		c.etcd.Stop()
		c.etcd = nil
	}
	return "", c.failed("etcd", err)
}

// startAPIServer runs kube-apiserver on a free loopback port. The Service
// range is configuration only (nothing routes it), and with the endpoint
// reconciler off the API server never publishes its own address as the
// kubernetes Service's endpoint.
func (c *ControlPlane) startAPIServer(ctx context.Context, s secrets, etcdURL string) error {
	client, err := s.httpClient()
	if err != nil {
		return err
	}
	for range 3 {
		var port string
		if port, err = lab.FreePort(); err != nil {
			return err
		}
		c.Server = "https://127.0.0.1:" + port
		c.api, err = lab.Start(ctx, filepath.Join(c.dir, "kube-apiserver.log"), nil, filepath.Join(c.bin, "kube-apiserver"),
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+port,
			"--etcd-servers="+etcdURL, "--endpoint-reconciler-type=none",
			"--cert-dir="+filepath.Join(c.dir, "certs"), "--tls-cert-file="+s.certFile, "--tls-private-key-file="+s.keyFile,
			"--token-auth-file="+s.tokenFile, "--authorization-mode=RBAC",
			"--service-account-key-file="+s.saPublic, "--service-account-signing-key-file="+s.saPrivate,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=10.96.0.0/12", "--profiling=false", "-v=1")
		if err != nil {
			return err
		}
		if err = waitHTTP(ctx, client, c.Server+"/readyz", s.token, c.api); err == nil {
			return nil
		}
		c.api.Stop()
		c.api = nil
	}
	return c.failed("kube-apiserver", err)
}

// failed is err with the end of the component's log.
func (c *ControlPlane) failed(name string, err error) error {
	log, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	if len(log) > 4000 {
		log = log[len(log)-4000:]
	}
	return fmt.Errorf("%s: %w\n%s", name, err, log)
}

// waitHTTP polls url until it answers 200, for at most a minute (the API
// server is ready in seconds; a busy machine may take longer), or until p exits.
func waitHTTP(ctx context.Context, client *http.Client, url, token string, p *lab.Process) error {
	var last error
	for range 300 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if resp, err := client.Do(req); err != nil {
			last = err
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = errors.New(resp.Status)
		}
		select {
		case <-p.Exited:
			return fmt.Errorf("exited before %s answered (%v)", url, last)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after a minute: %v", url, last)
}

// httpClient trusts the lab's CA only.
func (s secrets) httpClient() (*http.Client, error) {
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + s.caFile)
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// kubeconfig is a kubeconfig for server with the admin's token, trusting the lab's CA.
func kubeconfig(server string, s secrets) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
current-context: lab
`, server, s.caFile, s.token)
}
