package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// startWatch reloads the repository when files under ModelDir change. fsnotify is not
// recursive, so the watcher follows the two directory levels (models and versions) and
// re-adds them after every reload. Events are debounced: copying a model writes many
// files, and one reload should see them all.
func (s *Server) startWatch() error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.cfg.ModelDir, err)
	}
	s.watchStop, s.watchDone = make(chan struct{}), make(chan struct{})
	s.addWatches(w)
	go func() {
		defer close(s.watchDone)
		defer w.Close()
		var timer <-chan time.Time
		for {
			select {
			case <-s.watchStop:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				timer = time.After(s.cfg.ReloadDebounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.cfg.Logger.Warn("model directory watch", "err", err)
				timer = time.After(s.cfg.ReloadDebounce)
			case <-timer:
				timer = nil
				res := s.reg.Reload()
				s.cfg.Logger.Info("reload after file change", "loaded", len(res.Loaded),
					"retired", len(res.Retired), "failed", len(res.Failed), "serving", res.Serving)
				s.addWatches(w)
				if res.Retry {
					// A file was being written: try again once it has settled.
					timer = time.After(s.cfg.ReloadDebounce)
				}
			}
		}
	}()
	return nil
}

// addWatches watches the repository, each model directory and each version directory.
// Adding a watch twice is harmless.
func (s *Server) addWatches(w *fsnotify.Watcher) {
	root := s.cfg.ModelDir
	if err := w.Add(root); err != nil {
		s.cfg.Logger.Warn("model directory watch", "dir", root, "err", err)
		return
	}
	models, _ := os.ReadDir(root)
	for _, m := range models {
		if !m.IsDir() || skipName(m.Name()) {
			continue
		}
		dir := filepath.Join(root, m.Name())
		w.Add(dir)
		versions, _ := os.ReadDir(dir)
		for _, v := range versions {
			if v.IsDir() && !skipName(v.Name()) {
				w.Add(filepath.Join(dir, v.Name()))
			}
		}
	}
}
