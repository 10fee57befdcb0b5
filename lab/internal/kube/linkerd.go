package kube

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Namespace is Linkerd's control plane namespace.
const Namespace = "linkerd"

// A Deployment of Linkerd's control plane and the headless Services that
// select its pods: the destination pods serve linkerd-dst-headless and
// linkerd-policy, the identity pods linkerd-identity-headless.
type deployment struct {
	name     string
	services []headless
}

type headless struct {
	name string
	port int32 // the port named grpc
}

var linkerd = []deployment{
	{"linkerd-destination", []headless{{"linkerd-dst-headless", 8086}, {"linkerd-policy", 8090}}},
	{"linkerd-identity", []headless{{"linkerd-identity-headless", 8080}}},
}

// Replicas is how many pods each Linkerd Deployment runs: 3 endpoints per Service.
const Replicas = 3

// Linkerd is Linkerd's control plane as the API server holds it: its Services
// and, for each Deployment, the pods behind them, as EndpointSlices written the
// way the endpointslice controller writes them.
type Linkerd struct {
	client *kubernetes.Clientset
	mu     sync.Mutex
	pods   map[string][]Pod                      // by Deployment, oldest first
	slices map[string]*discoveryv1.EndpointSlice // by Service
	next   net.IP                                // the next pod IP to hand out
}

// Pod is a pod behind a Service: its name (the endpoint's targetRef) and IP.
type Pod struct {
	Name, IP string
	uid      types.UID
	ready    bool // passed its readiness probe
	leaving  bool // deleted, in its grace period
}

// WriteLinkerd creates the linkerd namespace, the three headless Services, and
// their EndpointSlices with Replicas ready pods each; and kube-system's kube-dns
// Service, whose ClusterIP NodeLocal DNSCache forwards to.
func WriteLinkerd(ctx context.Context, client *kubernetes.Clientset) (*Linkerd, error) {
	l := &Linkerd{client: client, pods: map[string][]Pod{}, slices: map[string]*discoveryv1.EndpointSlice{}, next: net.IPv4(10, 244, 0, 11).To4()}
	if err := writeKubeDNS(ctx, client); err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"linkerd.io/is-control-plane": "true"}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for _, d := range linkerd {
		for range Replicas {
			l.pods[d.name] = append(l.pods[d.name], l.newPod(d.name, true))
		}
		for _, h := range d.services {
			if err := l.createService(ctx, d, h); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

func (l *Linkerd) createService(ctx context.Context, d deployment, h headless) error {
	svc, err := l.client.CoreV1().Services(Namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: h.name, Labels: map[string]string{"linkerd.io/control-plane-component": d.name}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"linkerd.io/control-plane-component": d.name},
			Ports:     []corev1.ServicePort{{Name: "grpc", Port: h.port, TargetPort: intstr.FromInt32(h.port), Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	yes := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: h.name + "-",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: h.name,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(h.port), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   endpoints(l.pods[d.name]),
	}
	created, err := l.client.DiscoveryV1().EndpointSlices(Namespace).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	l.slices[h.name] = created
	return nil
}

// writeKubeDNS creates kube-system/kube-dns as kubeadm does, at the ClusterIP
// kubeadm gives it (the tenth address of the Service range).
func writeKubeDNS(ctx context.Context, client *kubernetes.Clientset) error {
	_, err := client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10",
			Selector:  map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: 9153, TargetPort: intstr.FromInt32(9153), Protocol: corev1.ProtocolTCP},
			},
		},
	}, metav1.CreateOptions{})
	return err
}

// newPod names a new pod of the Deployment as a ReplicaSet would and gives it
// the next pod IP.
func (l *Linkerd) newPod(deployment string, ready bool) Pod {
	ip, n := l.next.String(), int(l.next[2])<<8|int(l.next[3])
	l.next = nextIP(l.next)
	return Pod{Name: fmt.Sprintf("%s-7d9f8c6b5-%05x", deployment, n), IP: ip, uid: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", n)), ready: ready}
}

// nextIP is ip + 1, skipping the .0 and .255 of each /24 (pod CIDRs hand out neither).
func nextIP(ip net.IP) net.IP {
	next := slices.Clone(ip)
	for {
		for i := len(next) - 1; i >= 0; i-- {
			if next[i]++; next[i] != 0 {
				break
			}
		}
		if next[3] != 0 && next[3] != 255 {
			return next
		}
	}
}

// endpoints are pods as the endpointslice controller lists them: ready only
// once the readiness probe passed and not while terminating; serving while the
// probe passes, terminating too; no hostname (the pods are not a StatefulSet),
// so the kubernetes plugin names each by its IP.
func endpoints(pods []Pod) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, p := range pods {
		out = append(out, discoveryv1.Endpoint{
			Addresses: []string{p.IP},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr(p.ready && !p.leaving),
				Serving:     ptr(p.ready),
				Terminating: ptr(p.leaving),
			},
			NodeName:  ptr("node-0"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: Namespace, Name: p.Name, UID: p.uid},
		})
	}
	return out
}

func ptr[T any](v T) *T { return &v }
