package image

// The image end to end: the image make image builds, run by podman (or docker)
// on the host network with a Corefile and zone mounted read-only, queried with
// real dig over UDP and TCP from several loopback source addresses.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

const (
	nonroot              = "65532"
	capNetBindService    = 10
	capabilityXattr      = "SCHILY.xattr.security.capability"
	vfsCapFlagsEffective = 0x000001
)

var (
	root      = filepath.Join("..", "..")
	container = filepath.Join(root, "lab", "container")
	// image is the image under test: $MINTTL_IMAGE (make test sets it to what
	// make image has just built), else built here by make image.
	image string
)

func TestMain(m *testing.M) {
	image = os.Getenv("MINTTL_IMAGE")
	if image == "" {
		make := exec.Command("make", "-C", root, "image")
		make.Stdout, make.Stderr = os.Stderr, os.Stderr
		name, err := exec.Command("make", "-s", "--no-print-directory", "-C", root, "image-name").Output()
		if err == nil {
			err = make.Run()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "make image: %v (the image test needs a container runtime: docker with a running engine, or podman and runc, which lab/container installs as root)\n", err)
			os.Exit(1)
		}
		image = strings.TrimSpace(string(name))
	}
	os.Exit(m.Run())
}

// cli runs the container CLI (lab/container) and returns its standard output.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(container, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lab/container %v: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func TestImageConfig(t *testing.T) {
	var inspected []struct {
		Config struct {
			User         string
			WorkingDir   string
			Entrypoint   []string
			ExposedPorts map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(cli(t, "image", "inspect", image)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("image inspect %s: %v %+v", image, err, inspected)
	}
	c := inspected[0].Config
	if c.User != nonroot+":"+nonroot || c.WorkingDir != "/" || !slices.Equal(c.Entrypoint, []string{"/coredns"}) {
		t.Errorf("user %q, workdir %q, entrypoint %q; want 65532:65532, /, [/coredns]", c.User, c.WorkingDir, c.Entrypoint)
	}
	for _, port := range []string{"53/udp", "53/tcp"} {
		if _, ok := c.ExposedPorts[port]; !ok {
			t.Errorf("port %s not exposed: %v", port, c.ExposedPorts)
		}
	}
}

// TestImageLayers reads the saved image ($MINTTL_IMAGE_ARCHIVE, what make
// image-archive wrote for the nodes, or saved here): the binary must carry
// cap_net_bind_service (effective and permitted) in its layer, and the user
// and the CA bundle must be there.
func TestImageLayers(t *testing.T) {
	archive := os.Getenv("MINTTL_IMAGE_ARCHIVE")
	if archive == "" {
		archive = filepath.Join(t.TempDir(), "image.tar")
		cli(t, "save", "-o", archive, image)
	}
	files := layerFiles(t, archive)

	coredns, ok := files["coredns"]
	if !ok {
		t.Fatalf("no /coredns in the image's layers: %v", slices.Sorted(maps.Keys(files)))
	}
	if coredns.Mode&0o111 == 0 {
		t.Errorf("/coredns is not executable: %o", coredns.Mode)
	}
	effective, permitted, err := fileCapability(coredns.PAXRecords[capabilityXattr])
	if err != nil {
		t.Errorf("/coredns: %v", err)
	} else if !effective || permitted&(1<<capNetBindService) == 0 {
		t.Errorf("/coredns capabilities: effective %v, permitted %#x; want cap_net_bind_service=+ep", effective, permitted)
	}
	if ca, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok || ca.Size == 0 {
		t.Error("no CA bundle at /etc/ssl/certs/ca-certificates.crt")
	}
	for _, name := range []string{"etc/passwd", "etc/group"} {
		if !strings.Contains(string(files[name].content), "nonroot:x:"+nonroot+":") {
			t.Errorf("/%s has no nonroot entry with id %s:\n%s", name, nonroot, files[name].content)
		}
	}
}

type layerFile struct {
	*tar.Header
	content []byte // etc/ files only
}

// layerFiles reads every layer of a saved image (docker-archive or OCI: each
// layer is a tar inside the outer tar) into a map by path.
func layerFiles(t *testing.T, archive string) map[string]layerFile {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]layerFile{}
	outer := tar.NewReader(f)
	for {
		_, err := outer.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		blob, err := io.ReadAll(outer)
		if err != nil {
			t.Fatal(err)
		}
		layer := tar.NewReader(bytes.NewReader(blob))
		for {
			lh, err := layer.Next()
			if err != nil {
				break // the end of a layer, or a blob that is no layer (config, manifest)
			}
			name := strings.TrimPrefix(lh.Name, "./")
			lf := layerFile{Header: lh}
			if strings.HasPrefix(name, "etc/") {
				lf.content, _ = io.ReadAll(layer)
			}
			files[name] = lf
		}
	}
}

// fileCapability decodes a security.capability xattr (struct vfs_cap_data,
// revision 2 or 3: little-endian magic_etc, then permitted and inheritable).
func fileCapability(xattr string) (effective bool, permitted uint64, err error) {
	b := []byte(xattr)
	if len(b) < 20 {
		return false, 0, fmt.Errorf("no security.capability xattr (%d bytes)", len(b))
	}
	magic := binary.LittleEndian.Uint32(b[0:4])
	if rev := magic &^ vfsCapFlagsEffective; rev != 0x02000000 && rev != 0x03000000 {
		return false, 0, fmt.Errorf("security.capability revision %#x", rev)
	}
	low, high := binary.LittleEndian.Uint32(b[4:8]), binary.LittleEndian.Uint32(b[12:16])
	return magic&vfsCapFlagsEffective != 0, uint64(high)<<32 | uint64(low), nil
}

func TestImagePlugins(t *testing.T) {
	out := cli(t, "run", "--rm", "--network", "none", image, "-plugins")
	// v1.15.0 lists plugin names, older releases server type and name (dns.minttl).
	if fields := strings.Fields(out); !slices.Contains(fields, "minttl") && !slices.Contains(fields, "dns.minttl") {
		t.Errorf("-plugins does not list minttl:\n%s", out)
	}
}

// TestImageServes runs the image as kubeadm does (non-root, read-only config)
// and checks minttl's contract from 20 clients over UDP and TCP, on a loopback
// port and on port 53.
func TestImageServes(t *testing.T) {
	privileged := freePort53(t)
	port, metrics := freePort(t), freePort(t)
	dir := t.TempDir()
	zone, err := os.ReadFile(filepath.Join(root, "testdata", "cluster.local.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.WriteCorefile(filepath.Join(root, "testdata", "image", "Corefile"), "/etc/coredns/cluster.local.db", dir,
		"PORT", port, "METRICS", metrics, "PRIVILEGED", privileged); err != nil {
		t.Fatal(err)
	}
	// The container's user is not root: it must be able to read the config.
	if err := errors.Join(os.WriteFile(filepath.Join(dir, "cluster.local.db"), zone, 0o644),
		os.Chmod(filepath.Join(dir, "Corefile"), 0o644), os.Chmod(dir, 0o755)); err != nil {
		t.Fatal(err)
	}

	// kubeadm's securityContext: allowPrivilegeEscalation false (no_new_privs),
	// capabilities drop ALL add NET_BIND_SERVICE, readOnlyRootFilesystem.
	name := fmt.Sprintf("minttl-image-test-%d", os.Getpid())
	cli(t, "run", "-d", "--name", name, "--network", "host", "--security-opt", "no-new-privileges",
		"--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "--read-only",
		"-v", dir+":/etc/coredns:ro", image, "-conf", "/etc/coredns/Corefile")
	t.Cleanup(func() { exec.Command(container, "rm", "-f", name).Run() })
	logs := func() string { out, _ := exec.Command(container, "logs", name).CombinedOutput(); return string(out) }
	for _, addr := range []string{"127.0.0.1:" + port, net.JoinHostPort(privileged, "53")} {
		if err := lab.WaitForDNS(context.Background(), addr, nil); err != nil {
			t.Fatalf("the image does not answer on %s: %v\n%s", addr, err, logs())
		}
	}

	t.Run("runs as nonroot with cap_net_bind_service", func(t *testing.T) {
		pid := strings.TrimSpace(cli(t, "inspect", "-f", "{{.State.Pid}}", name))
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		fields := procStatus(string(status))
		for _, id := range []string{"Uid", "Gid"} {
			if ids := strings.Fields(fields[id]); len(ids) != 4 || slices.ContainsFunc(ids, func(s string) bool { return s != nonroot }) {
				t.Errorf("%s: %q, want %s for real, effective, saved and filesystem", id, fields[id], nonroot)
			}
		}
		if fields["NoNewPrivs"] != "1" {
			t.Errorf("NoNewPrivs %q: the process does not run as with allowPrivilegeEscalation false", fields["NoNewPrivs"])
		}
		var eff uint64
		if _, err := fmt.Sscanf(fields["CapEff"], "%x", &eff); err != nil || eff != 1<<capNetBindService {
			t.Errorf("CapEff %q, want cap_net_bind_service alone (%#x)", fields["CapEff"], uint64(1)<<capNetBindService)
		}
	})

	t.Run("raised with jitter, UDP and TCP, loopback port and port 53", func(t *testing.T) {
		spread := lab.Spread{}
		for client := 10; client < 30; client++ {
			for _, transport := range []string{"+notcp", "+tcp"} {
				server, p := "127.0.0.1", port
				if client%5 == 0 {
					server, p = privileged, "53"
				}
				m := digSRV(t, server, p, fmt.Sprintf("127.0.0.%d", client), transport)
				if problem := lab.SRVProblem(m, false); problem != "" {
					t.Fatalf("client %d %s @%s:%s: %s", client, transport, server, p, problem)
				}
				spread.Add(m.Answer[0].Header().Ttl)
			}
		}
		if spread.Most() < 2 {
			t.Errorf("clients asking in the same second all got one TTL: %v", spread)
		}
	})

	t.Run("out of minttl's zone untouched", func(t *testing.T) {
		out, err := lab.Dig("127.0.0.1", port, "127.0.0.31", "+noall", "+answer", "A", "web.default.svc.cluster.local.")
		if err != nil {
			t.Fatal(err)
		}
		rrs, err := lab.ParseRRs(out)
		if err != nil {
			t.Fatal(err)
		}
		if ttl := rrs[0].Header().Ttl; ttl > 5 {
			t.Errorf("web.default.svc.cluster.local. got TTL %d, want the zone's 5 or less", ttl)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://127.0.0.1:" + metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		want := `coredns_minttl_raised_responses_total{server="dns://127.0.0.1:` + port + `",zone="linkerd.svc.cluster.local."}`
		if !strings.Contains(string(body), want) {
			t.Errorf("no %s in the metrics", want)
		}
	})

	if strings.Contains(logs(), "[ERROR]") {
		t.Errorf("errors in the log:\n%s", logs())
	}
}

// digSRV asks for the Linkerd SRV name and returns the answer as a message:
// SRV records in the answer section, the rest in the additional section.
func digSRV(t *testing.T, server, port, src, transport string) *dns.Msg {
	t.Helper()
	out, err := lab.Dig(server, port, src, "+noall", "+answer", "+additional", transport, "SRV", lab.SRVName)
	if err != nil {
		t.Fatal(err)
	}
	rrs, err := lab.ParseRRs(out)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeSRV {
			m.Answer = append(m.Answer, rr)
		} else {
			m.Extra = append(m.Extra, rr)
		}
	}
	return m
}

func procStatus(status string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

func freePort(t *testing.T) string {
	t.Helper()
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freePort53 finds a loopback address whose port 53 is free for UDP and TCP.
// Binding it here needs root, as make image does.
func freePort53(t *testing.T) string {
	t.Helper()
	var last error
	for range 20 {
		addr := fmt.Sprintf("127.0.53.%d", 1+rand.Intn(250))
		l, err := net.Listen("tcp", addr+":53")
		if err != nil {
			last = err
			continue
		}
		u, err := net.ListenPacket("udp", addr+":53")
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
		last = err
	}
	t.Fatalf("no loopback address with port 53 free (the test binds it to check the address is free, which needs root): %v", last)
	return ""
}
