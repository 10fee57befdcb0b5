package minttl

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// window counts the queries of one server and zone in the current second
// and observes each second's count once, when the second is over. The second
// closes at the first query of a later second or at the next tick of a
// handler's ticker, whichever comes first: one compare-and-swap moves the
// window on, so a second is observed exactly once however many queries,
// tickers (the old and the new handler during a reload) race for it.
type window struct {
	// state is the Unix second being counted (high 32 bits) and its count
	// so far (low 32 bits).
	state   atomic.Uint64
	observe prometheus.Observer
}

const countBits = 32

// maxQuiet bounds the quiet seconds one close fills in: more only pass when
// no handler ticked the window, as between the reload that dropped its zone
// and the one that brought it back, and those seconds were not served.
const maxQuiet = 60

func newWindow(observe prometheus.Observer, now int64) *window {
	w := &window{observe: observe}
	w.state.Store(uint64(now) << countBits)
	return w
}

// add counts a query at now (Unix seconds).
func (w *window) add(now int64) {
	for {
		old := w.state.Load()
		if current(old, now) {
			if w.state.CompareAndSwap(old, old+1) {
				return
			}
		} else if w.state.CompareAndSwap(old, uint64(now)<<countBits|1) {
			w.closed(old, now)
			return
		}
	}
}

// tick closes the window's second if now is past it.
func (w *window) tick(now int64) {
	for {
		old := w.state.Load()
		if current(old, now) || w.state.CompareAndSwap(old, uint64(now)<<countBits) {
			if !current(old, now) {
				w.closed(old, now)
			}
			return
		}
	}
}

// current reports whether a query at now counts into the second of state:
// that second, or a later one that a query racing this one opened. Only a
// clock stepped back by more than maxQuiet leaves that second behind.
func current(state uint64, now int64) bool {
	ahead := second(state) - now
	return ahead >= 0 && ahead <= maxQuiet
}

// closed observes the count of the second old held, then 0 for each quiet
// second between it and now. (A second from after a clock stepped back is
// dropped.)
func (w *window) closed(old uint64, now int64) {
	if second(old) > now {
		return
	}
	w.observe.Observe(float64(old & (1<<countBits - 1)))
	for quiet := min(now-second(old)-1, maxQuiet); quiet > 0; quiet-- {
		w.observe.Observe(0)
	}
}

func second(state uint64) int64 { return int64(state >> countBits) }

// ticker is one handler's: at every turn of a wall-clock second it publishes
// the new second, which the handler counts its queries in (an atomic load
// where a clock read would cost more), and closes the windows the handler has
// counted into, so that a quiet second is observed on time, not when the next
// query comes. It runs from the server's start to its shutdown, reloads
// included: the old handler's ticker stops, the new one's starts.
type ticker struct {
	second  atomic.Int64 // the current Unix second; 0 while the ticker does not run
	windows atomic.Pointer[[]*window]
	mu      sync.Mutex
	stop    chan struct{}
	done    chan struct{}
}

// own adds w to the windows the ticker closes. A window that no ticker
// closed for longer than maxQuiet starts afresh at now.
func (s *ticker) own(w *window, now int64) {
	if ws := s.windows.Load(); ws != nil && contains(*ws, w) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var owned []*window
	if ws := s.windows.Load(); ws != nil {
		if contains(*ws, w) {
			return
		}
		owned = append(owned, *ws...)
	}
	if old := w.state.Load(); now-second(old) > maxQuiet {
		w.state.CompareAndSwap(old, uint64(now)<<countBits)
	}
	owned = append(owned, w)
	s.windows.Store(&owned)
}

func contains(ws []*window, w *window) bool {
	for _, o := range ws {
		if o == w {
			return true
		}
	}
	return false
}

// start starts the ticker; clock is the handler's clock.
func (s *ticker) start(clock func() time.Time) {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.second.Store(clock().Unix())
	go func() {
		defer close(s.done)
		defer s.second.Store(0)
		t := time.NewTimer(untilNextSecond(clock()))
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				now := clock()
				s.second.Store(now.Unix())
				s.tick(now.Unix())
				t.Reset(untilNextSecond(now))
			}
		}
	}()
}

// untilNextSecond is how long from now until the next second begins, a
// millisecond into it, so that a timer firing a little early still finds
// the new second.
func untilNextSecond(now time.Time) time.Duration {
	return now.Truncate(time.Second).Add(time.Second + time.Millisecond).Sub(now)
}

func (s *ticker) tick(now int64) {
	if ws := s.windows.Load(); ws != nil {
		for _, w := range *ws {
			w.tick(now)
		}
	}
}

// halt stops the ticker and waits until it has stopped.
func (s *ticker) halt() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
}
