package main

import (
	"log/slog"
	"strings"

	"github.com/predictd/predictd/features/sidecarstore"
	"github.com/predictd/predictd/sidecar"
	"github.com/predictd/predictd/sidecar/portal"
)

// servePortal puts the portal at /ui/: on the admin listener when there is one, else on
// the predict listener (the Unix socket serves it either way). With an admin token its
// prediction and entity forms ask for it.
func servePortal(srv *sidecar.Server, store sidecar.FeatureStore, f *serveFlags, token string, log *slog.Logger) (func(), error) {
	cfg := portal.Config{Server: srv, Profiles: f.profiles, Logger: log, Token: token}
	for _, h := range strings.Split(f.uiHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Hosts = append(cfg.Hosts, h)
		}
	}
	if store != nil {
		cfg.Store, _ = sidecarstore.Unwrap(store)
	}
	p, err := portal.New(cfg)
	if err != nil {
		return nil, err
	}
	srv.SetUI(p.Handler(), f.adminListen != "")
	return func() { p.Close() }, nil
}
