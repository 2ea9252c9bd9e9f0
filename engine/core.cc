//go:build cgo

// core.cc — the one source list of the C++ scoring core. cgo compiles only sources in the
// package directory, so this unity file pulls in csrc/; CMake builds this same file into
// libpredictd_core. Add a new csrc/*.cc here and both builds get it.
#include "../csrc/api.cc"
#include "../csrc/build.cc"
#include "../csrc/kernels.cc"
