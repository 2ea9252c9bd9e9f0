package loadtest

import (
	"os"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	line := "30091 (a (weird) name) R 30089 30089 4159 0 -1 4194304 101 0 0 0 250 150 0 0 20 0 1 0 76203 3133440 425 18446744073709551615 0 0 0"
	s, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUSeconds != 4.0 || s.RSSBytes != 425*int64(os.Getpagesize()) {
		t.Errorf("got %+v, want 4s and 425 pages", s)
	}
	for _, bad := range []string{"", "1 (x) R 1 2", "1 (x" + ") R 1 1 1 0 -1 0 0 0 0 0 a b 0 0 20 0 1 0 7 3 425"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
	// Our own process: CPU time is positive after some work, RSS is positive.
	self, err := ReadProc(os.Getpid())
	if err != nil || self.RSSBytes <= 0 {
		t.Errorf("ReadProc(self) = %+v, %v", self, err)
	}
}

func TestListenInodes(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1224 1 000000005c6fde6f 100 0 0 10 0
   1: 0100007F:07E8 0100007F:D87E 01 00000000:00000000 03:00000108 00000000     0        0 999 3 000000003fce5c9a
`
	if got := tcpListenInodes([]byte(tcp), 2024); len(got) != 1 || !got["1224"] {
		t.Errorf("tcp: %v, want only the LISTEN socket 1224", got)
	}
	if got := tcpListenInodes([]byte(tcp), 80); len(got) != 0 {
		t.Errorf("tcp port 80: %v", got)
	}
	unix := `Num       RefCount Protocol Flags    Type St Inode Path
00000000db003940: 00000002 00000000 00010000 0001 01 5555 /run/p.sock
00000000db003941: 00000003 00000000 00000000 0001 03 5556 /run/p.sock
`
	if got := unixListenInodes([]byte(unix), "/run/p.sock"); len(got) != 1 || !got["5555"] {
		t.Errorf("unix: %v, want 5555", got)
	}
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine("lab")
	if m.Label != "lab" || m.Cores < 1 || m.GOMAXPROCS < 1 || m.CPUModel == "" || m.GitCommit == "" {
		t.Errorf("%+v", m)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (x) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 7 3 425 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseProcStat(data)
		if err == nil && s.CPUSeconds < 0 {
			t.Fatalf("negative CPU %v", s.CPUSeconds)
		}
		_ = tcpListenInodes(data, 80)
		_ = unixListenInodes(data, "/x")
	})
}
