package shadow

import (
	"math"
	"time"
)

func (m *Mirror) adaptLoop() {
	defer m.wg.Done()
	t := time.NewTicker(adaptEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.adapt(m.now())
		}
	}
}

// adapt sets the sampling rate of every shadow with a budget so that the expected CPU
// time of the shadows on one budget fits budgetHeadroom of its share. A shadow's demand
// is Rate × λ × cost: λ is the higher of the current request rate (a moving average)
// and the busiest bucket of the last hour, so the rate set at a quiet moment already
// leaves room for the hour's peak, and the fraction mirrored is the same at every load
// level; cost is the moving average of the measured CPU time per job. All shadows of a
// budget are scaled by the same factor. A shadow whose cost is not yet known counts as
// free until its first job is scored.
func (m *Mirror) adapt(now time.Time) {
	m.adaptMu.Lock()
	defer m.adaptMu.Unlock()
	m.mu.Lock()
	shadows := make([]*Shadow, 0, len(m.shadows))
	for s := range m.shadows {
		shadows = append(shadows, s)
	}
	m.mu.Unlock()
	demand := map[*Budget]float64{} // CPU ns per second
	for _, s := range shadows {
		prim := s.primaries.Load()
		if !s.lastTick.IsZero() {
			if dt := now.Sub(s.lastTick); dt > 0 {
				inst := float64(prim-s.lastPrim) / dt.Seconds()
				a := 1 - math.Exp(-float64(dt)/float64(rateTau))
				if s.lambda == 0 {
					a = 1 // the first traffic: start from it, not from nothing
				}
				s.lambda += a * (inst - s.lambda)
			}
		}
		s.lastPrim, s.lastTick = prim, now
		b := s.cfg.Budget
		if b == nil {
			continue
		}
		s.mu.Lock()
		cost := s.st.cost
		s.mu.Unlock()
		lambda := max(s.lambda, s.cov.peakRate(now))
		demand[b] += s.cfg.Rate * lambda * cost
	}
	scale := map[*Budget]float64{}
	for b, d := range demand {
		capacity := budgetHeadroom * b.Share() * 1e9
		scale[b] = 1
		if d > capacity {
			scale[b] = capacity / d
		}
	}
	for _, s := range shadows {
		r := s.cfg.Rate
		if f, ok := scale[s.cfg.Budget]; ok && s.cfg.Budget != nil {
			r *= f
		}
		s.effRate.Store(math.Float64bits(r))
	}
}
