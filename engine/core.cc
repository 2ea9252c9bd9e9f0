//go:build cgo

// core.cc — the one source list of the C++ scoring core. cgo compiles only sources in the
// package directory, so this unity file pulls in csrc/; CMake builds this same file into
// libpredictd_core. Add a new csrc/*.cc here and both builds get it.
//
// The go command's build cache hashes this file, not what it includes, so the stamp below
// (sha256 of csrc/*.h csrc/*.cc) must change whenever csrc/ does: `scripts/ci/core.sh
// stamp` rewrites it, and scripts/ci/core.sh fails when it is stale.
// csrc-sha256: 15092add6a341da7d22fe455930a096702d2ac83445c9b63f567e4034926c04a
#include "../csrc/api.cc"
#include "../csrc/background.cc"
#include "../csrc/build.cc"
#include "../csrc/kernels.cc"
