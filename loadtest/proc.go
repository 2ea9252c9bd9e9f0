package loadtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports (the kernel fixes it for the ABI); reading it with
// sysconf would need cgo.
const clockTicks = 100

// ProcSample is a process's cumulative CPU time and resident memory at one moment.
type ProcSample struct {
	CPUSeconds float64 // user + system
	RSSBytes   int64
}

// ReadProc samples the process's CPU time in nanoseconds from its CPU clock
// (processCPU: every thread's time on a CPU, exited ones included; a thread running at
// that moment counted up to its last scheduler tick), and its RSS from /proc/<pid>/stat;
// where the clock cannot be read, the CPU time is stat's.
//
// stat counts CPU time in clock ticks of 10 ms: a one-second window of a sidecar busy
// 20 ms reads 10 or 30 ms as often as 20, so per-window CPU, and a step's at low rates,
// would carry that rounding.
func ReadProc(pid int) (ProcSample, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	s, err := parseProcStat(data)
	if err != nil {
		return s, err
	}
	if ns, ok := processCPU(pid); ok {
		s.CPUSeconds = float64(ns) / 1e9
	}
	return s, nil
}

// parseProcStat reads utime, stime (fields 14, 15) and rss (field 24, pages) from a
// /proc/<pid>/stat line. The command name (field 2) may contain spaces and parentheses,
// so fields are counted after its last ')'.
func parseProcStat(data []byte) (ProcSample, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ProcSample{}, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 22 {
		return ProcSample{}, fmt.Errorf("proc stat: %d fields, want at least 24", len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return ProcSample{}, fmt.Errorf("proc stat: %w", err)
	}
	return ProcSample{
		CPUSeconds: float64(ut+st) / clockTicks,
		RSSBytes:   rss * int64(os.Getpagesize()),
	}, nil
}

// FindListenerPID returns the pid of the process that listens on target ("HOST:PORT" or
// "unix:PATH"): it finds the socket's inode in /proc/net/{tcp,tcp6,unix} and then the
// process holding it in /proc/*/fd. It needs permission to read the other process's fds
// (same user or root).
func FindListenerPID(target string) (int, error) {
	var inodes map[string]bool
	if strings.HasPrefix(target, "unix:") {
		path := strings.TrimPrefix(target, "unix:")
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		data, err := os.ReadFile("/proc/net/unix")
		if err != nil {
			return 0, err
		}
		inodes = unixListenInodes(data, path)
	} else {
		_, portStr, err := net.SplitHostPort(strings.TrimPrefix(target, "http://"))
		if err != nil {
			return 0, err
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return 0, fmt.Errorf("port %q: %v", portStr, err)
		}
		inodes = map[string]bool{}
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for ino := range tcpListenInodes(data, port) {
				inodes[ino] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no listening socket for %s in /proc/net", target)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, fdDir := range procs {
		ents, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				return strconv.Atoi(filepath.Base(filepath.Dir(fdDir)))
			}
		}
	}
	return 0, fmt.Errorf("no process holds the socket of %s (or no permission to see it); pass --sidecar-pid", target)
}

// tcpListenInodes returns the inodes of sockets in state LISTEN (0A) on port, from the
// text of /proc/net/tcp or tcp6.
func tcpListenInodes(data []byte, port int) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err == nil && int(p) == port {
			out[f[9]] = true
		}
	}
	return out
}

// unixListenInodes returns the inodes of listening Unix sockets bound to path, from the
// text of /proc/net/unix (flags 00010000 is __SO_ACCEPTCON).
func unixListenInodes(data []byte, path string) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[7] != path || f[3] != "00010000" {
			continue
		}
		out[f[6]] = true
	}
	return out
}

// Machine describes where a profile was measured.
type Machine struct {
	Label      string `json:"label,omitempty"` // free text from --label
	Hostname   string `json:"hostname"`
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"` // logical CPUs visible (runtime.NumCPU)
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	GitCommit  string `json:"git_commit"` // "-dirty" when the tree had changes; "unknown" outside git
	Kernel     string `json:"kernel,omitempty"`
}

// DescribeMachine collects Machine for this host.
func DescribeMachine(label string) Machine {
	m := Machine{
		Label:      label,
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		GitCommit:  gitCommit(),
		CPUModel:   "unknown",
	}
	m.Hostname, _ = os.Hostname()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(data)
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "-dirty"
	}
	return c
}
