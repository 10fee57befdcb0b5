package kube

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Step is one pod of a Deployment replaced the way a rolling update with
// maxSurge 1 and maxUnavailable 0 (Deployment's defaults, rounded, at 3
// replicas) replaces it, as the endpointslice controller writes it into the
// slices of every Service that selects the pods: the new pod appears not
// ready, turns ready when its readiness probe passes, then the oldest pod is
// deleted and turns terminating (no longer ready, still serving), and leaves
// the slices when its grace period is over.
type Step struct {
	Deployment string
	New, Old   Pod
	// Ready is when the write that made New ready was sent, to the slice of
	// the Deployment's first Service: from then on, DNS may answer with it.
	Ready time.Time
}

// Roll adds a pod to the Deployment's Services, turns it ready readyAfter
// later, and turns the oldest terminating. Remove ends the step.
func (l *Linkerd) Roll(ctx context.Context, name string, readyAfter time.Duration) (Step, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pods := l.pods[name]
	if len(pods) == 0 {
		return Step{}, fmt.Errorf("no Deployment %s", name)
	}
	s := Step{Deployment: name, New: l.newPod(name, false), Old: pods[0]}
	l.pods[name] = append(pods, s.New)
	if _, err := l.write(ctx, name); err != nil {
		return s, err
	}
	select {
	case <-time.After(readyAfter):
	case <-ctx.Done():
		return s, ctx.Err()
	}
	l.set(name, s.New.Name, func(p *Pod) { p.ready = true })
	var err error
	if s.Ready, err = l.write(ctx, name); err != nil {
		return s, err
	}
	l.set(name, s.Old.Name, func(p *Pod) { p.leaving = true })
	_, err = l.write(ctx, name)
	return s, err
}

// Remove takes the step's old pod out of the slices: its grace period is over.
func (l *Linkerd) Remove(ctx context.Context, s Step) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pods[s.Deployment] = slices.DeleteFunc(l.pods[s.Deployment], func(p Pod) bool { return p.Name == s.Old.Name })
	_, err := l.write(ctx, s.Deployment)
	return err
}

func (l *Linkerd) set(deployment, pod string, change func(*Pod)) {
	for i := range l.pods[deployment] {
		if l.pods[deployment][i].Name == pod {
			change(&l.pods[deployment][i])
		}
	}
}

// write updates the slice of each Service of the Deployment to its pods, and
// returns when the first write was sent.
func (l *Linkerd) write(ctx context.Context, name string) (time.Time, error) {
	var first time.Time
	for _, d := range linkerd {
		if d.name != name {
			continue
		}
		for _, h := range d.services {
			slice := l.slices[h.name].DeepCopy()
			slice.Endpoints = endpoints(l.pods[name])
			if first.IsZero() {
				first = time.Now()
			}
			updated, err := l.client.DiscoveryV1().EndpointSlices(Namespace).Update(ctx, slice, metav1.UpdateOptions{})
			if err != nil {
				return first, fmt.Errorf("EndpointSlice of %s: %w", h.name, err)
			}
			l.slices[h.name] = updated
		}
	}
	return first, nil
}

// Pods are the Deployment's pods that are ready and not terminating: what DNS
// answers with once it has seen the last write.
func (l *Linkerd) Pods(deployment string) []Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Pod
	for _, p := range l.pods[deployment] {
		if p.ready && !p.leaving {
			out = append(out, p)
		}
	}
	return out
}
