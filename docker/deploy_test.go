// Package docker holds the deployment files; this test keeps them true to the code:
// every flag, environment variable, probe path, port and copied path they name must
// exist. Docker itself is not needed (nor run).
package docker

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const repo = ".."

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// flagsIn returns the flag names a command's source defines with the pattern re.
func flagsIn(t *testing.T, path string, re *regexp.Regexp) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(read(t, path), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("no flags found in %s", path)
	}
	return flags
}

func serveFlags(t *testing.T) map[string]bool {
	return flagsIn(t, "cmd/predictd/serve.go", regexp.MustCompile(`fs\.\w+Var\(&f\.\w+, "([a-z0-9-]+)"`))
}

func loadtestRunFlags(t *testing.T) map[string]bool {
	return flagsIn(t, "cmd/predictd-loadtest/main.go", regexp.MustCompile(`fs\.\w+\("([a-z0-9-]+)"`))
}

// envFlag maps PREDICTD_MAX_BODY_BYTES to max-body-bytes, as serve.go's envName does
// in reverse.
func envFlag(env string) (string, bool) {
	name, ok := strings.CutPrefix(env, "PREDICTD_")
	if !ok {
		return "", false
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-"), true
}

// checkArgs checks "--flag=value" / "--flag value" arguments against flags and returns
// the values by flag name.
func checkArgs(t *testing.T, where string, args []string, flags map[string]bool) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("%s: flag --%s does not exist", where, name)
		}
		if !hasVal && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		vals[name] = val
	}
	return vals
}

func port(t *testing.T, where, hostport string) int {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	p, err := strconv.Atoi(hostport[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%s: %q has no port", where, hostport)
	}
	return p
}

// routes returns the paths the sidecar's router (sidecar/routes.go) serves.
func routes(t *testing.T) map[string]bool {
	r := map[string]bool{}
	for _, m := range regexp.MustCompile(`case "(/[a-z0-9/]+)"`).FindAllStringSubmatch(read(t, "sidecar/routes.go"), -1) {
		r[m[1]] = true
	}
	return r
}

func TestDockerfiles(t *testing.T) {
	flags := serveFlags(t)
	for _, name := range []string{"Dockerfile", "Dockerfile.cuda"} {
		t.Run(name, func(t *testing.T) {
			text := read(t, "docker/"+name)
			// Join continuation lines.
			text = strings.ReplaceAll(text, "\\\n", " ")
			var (
				listenPort, exposed, checked int
				user                         string
				stages                       int
			)
			sc := bufio.NewScanner(strings.NewReader(text))
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" || line[0] == '#' {
					continue
				}
				inst, rest, _ := strings.Cut(line, " ")
				fields := strings.Fields(rest)
				switch strings.ToUpper(inst) {
				case "FROM":
					stages++
					img := fields[0]
					if !strings.HasPrefix(img, "${") && (!strings.Contains(img, ":") || strings.HasSuffix(img, ":latest")) {
						t.Errorf("base image %s is not pinned to a tag", img)
					}
				case "ARG":
					if strings.HasPrefix(rest, "CUDA_IMAGE=") && !strings.Contains(rest, "nvidia/cuda:13.") {
						t.Errorf("CUDA base %s is not CUDA 13", rest)
					}
				case "ENV":
					for _, kv := range fields {
						k, v, _ := strings.Cut(kv, "=")
						if f, ok := envFlag(k); ok {
							if !flags[f] {
								t.Errorf("ENV %s: predictd serve has no --%s", k, f)
							}
							if f == "listen" && !strings.HasPrefix(v, "127.0.0.1:") {
								t.Errorf("PREDICTD_LISTEN %s: predictions must listen on loopback (or the socket)", v)
							}
							if f == "admin-listen" {
								listenPort = port(t, "PREDICTD_ADMIN_LISTEN", v)
							}
						}
					}
				case "EXPOSE":
					exposed, _ = strconv.Atoi(fields[0])
				case "USER":
					user = fields[0]
				case "HEALTHCHECK":
					m := regexp.MustCompile(`http://127\.0\.0\.1:(\d+)(/\w+)`).FindStringSubmatch(rest)
					if m == nil {
						t.Fatalf("HEALTHCHECK %q does not fetch a local URL", rest)
					}
					checked, _ = strconv.Atoi(m[1])
					if !routes(t)[m[2]] || m[2] != "/healthz" {
						t.Errorf("HEALTHCHECK fetches %s, want /healthz", m[2])
					}
				case "COPY":
					if strings.HasPrefix(rest, "--from") {
						continue
					}
					for _, src := range fields[:len(fields)-1] {
						if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
							t.Errorf("COPY %s: %v", src, err)
						}
					}
				case "RUN":
					for _, m := range regexp.MustCompile(`(scripts/[\w.-]+|\./cmd/[\w-]+)`).FindAllString(rest, -1) {
						if _, err := os.Stat(filepath.Join(repo, m)); err != nil {
							t.Errorf("RUN uses %s: %v", m, err)
						}
					}
				}
			}
			if stages < 2 {
				t.Error("not a multi-stage build")
			}
			if user == "" || user == "root" || strings.HasPrefix(user, "0") {
				t.Errorf("runs as %q, want a non-root user", user)
			}
			if listenPort == 0 || listenPort != exposed || listenPort != checked {
				t.Errorf("ports disagree: PREDICTD_ADMIN_LISTEN %d, EXPOSE %d, HEALTHCHECK %d", listenPort, exposed, checked)
			}
		})
	}
}

type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Entrypoint  []string          `yaml:"entrypoint"`
		Command     []string          `yaml:"command"`
		Volumes     []string          `yaml:"volumes"`
		NetworkMode string            `yaml:"network_mode"`
		Build       *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
	} `yaml:"services"`
}

func TestCompose(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal([]byte(read(t, "docker/compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"redis", "predictd", "client", "loadtest"} {
		if _, ok := c.Services[s]; !ok {
			t.Fatalf("service %s missing", s)
		}
	}
	p := c.Services["predictd"]
	if p.Build == nil || filepath.Clean(filepath.Join("docker", p.Build.Context)) != "." || p.Build.Dockerfile != "docker/Dockerfile" {
		t.Errorf("predictd build %+v, want context .. and docker/Dockerfile", p.Build)
	}
	flags := serveFlags(t)
	for k := range p.Environment {
		if f, ok := envFlag(k); !ok || !flags[f] {
			t.Errorf("predictd environment %s is not a serve flag", k)
		}
	}
	listen := port(t, "PREDICTD_LISTEN", p.Environment["PREDICTD_LISTEN"])
	if !strings.HasPrefix(p.Environment["PREDICTD_LISTEN"], "127.0.0.1:") {
		t.Errorf("PREDICTD_LISTEN %s: predictions must listen on loopback", p.Environment["PREDICTD_LISTEN"])
	}
	admin := port(t, "PREDICTD_ADMIN_LISTEN", p.Environment["PREDICTD_ADMIN_LISTEN"])
	if len(p.Ports) != 1 || port(t, "ports", p.Ports[0]) != admin || !strings.HasPrefix(p.Ports[0], "127.0.0.1:") {
		t.Errorf("ports %v: want the admin port %d published on the host's loopback only", p.Ports, admin)
	}
	sock := p.Environment["PREDICTD_UNIX"]
	client := c.Services["client"]
	if !strings.Contains(strings.Join(client.Command, " "), "--unix-socket "+sock) {
		t.Errorf("client does not use the sidecar's socket %s", sock)
	}
	if !strings.Contains(strings.Join(client.Command, " "), `"model":"claims"`) {
		t.Error("client does not ask for the bundled demo model")
	}
	lt := c.Services["loadtest"]
	if lt.NetworkMode != "service:predictd" {
		t.Errorf("loadtest network_mode %q", lt.NetworkMode)
	}
	if len(lt.Command) == 0 || lt.Command[0] != "run" {
		t.Fatalf("loadtest command %v", lt.Command)
	}
	vals := checkArgs(t, "loadtest", lt.Command[1:], loadtestRunFlags(t))
	scen, ok := strings.CutPrefix(vals["scenario"], "/usr/share/predictd/scenarios/")
	if !ok {
		t.Errorf("scenario %q is not one the image ships", vals["scenario"])
	} else if _, err := os.Stat(filepath.Join(repo, "loadtest/scenarios", scen)); err != nil {
		t.Error(err)
	}
	if port(t, "loadtest target", vals["target"]) != listen {
		t.Errorf("loadtest targets %s, sidecar listens on %d", vals["target"], listen)
	}
}

func TestPod(t *testing.T) {
	var pod struct {
		APIVersion string         `yaml:"apiVersion"`
		Kind       string         `yaml:"kind"`
		Metadata   map[string]any `yaml:"metadata"`
		Spec       struct {
			Grace           int            `yaml:"terminationGracePeriodSeconds"`
			SecurityContext map[string]any `yaml:"securityContext"`
			InitContainers  []container    `yaml:"initContainers"`
			Containers      []container    `yaml:"containers"`
			Volumes         []struct {
				Name     string         `yaml:"name"`
				EmptyDir map[string]any `yaml:"emptyDir"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(read(t, "docker/k8s/pod.yaml")))
	dec.KnownFields(true)
	if err := dec.Decode(&pod); err != nil {
		t.Fatal(err)
	}
	if pod.Kind != "Pod" || len(pod.Spec.InitContainers) != 1 || len(pod.Spec.Containers) != 1 {
		t.Fatalf("want a Pod with predictd as the one native sidecar beside one app container")
	}
	p, app := pod.Spec.InitContainers[0], pod.Spec.Containers[0]
	if p.Name != "predictd" || p.RestartPolicy != "Always" {
		t.Errorf("sidecar %s restartPolicy %q, want predictd with Always", p.Name, p.RestartPolicy)
	}
	if len(p.Args) == 0 || p.Args[0] != "serve" {
		t.Fatalf("args %v do not start with serve", p.Args)
	}
	vals := checkArgs(t, "predictd args", p.Args[1:], serveFlags(t))
	sock := vals["unix"]
	if sock == "" {
		t.Fatal("predictd does not listen on a Unix socket")
	}
	shared := func(c container) string {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(sock, m.MountPath+"/") {
				return m.Name
			}
		}
		return ""
	}
	vol := shared(p)
	if vol == "" || shared(app) != vol {
		t.Errorf("socket %s is not on a volume both containers mount", sock)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == vol && v.EmptyDir == nil {
			t.Errorf("volume %s is not an emptyDir", vol)
		}
	}
	if !strings.HasPrefix(vals["listen"], "127.0.0.1:") {
		t.Errorf("--listen %s: predictions must listen on loopback (or the socket)", vals["listen"])
	}
	admin := port(t, "--admin-listen", vals["admin-listen"])
	if len(p.Ports) != 1 || p.Ports[0].ContainerPort != admin {
		t.Errorf("containerPort %v, --admin-listen port %d", p.Ports, admin)
	}
	r := routes(t)
	// Prometheus scrapes /metrics where it is served: the admin listener.
	ann, _ := pod.Metadata["annotations"].(map[string]any)
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(admin) ||
		ann["prometheus.io/path"] != "/metrics" || !r["/metrics"] {
		t.Errorf("scrape annotations %v: want prometheus.io/scrape \"true\", port \"%d\" (--admin-listen), path /metrics", ann, admin)
	}
	for name, pr := range map[string]*probe{"startup": p.StartupProbe, "readiness": p.ReadinessProbe, "liveness": p.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			continue
		}
		if !r[pr.HTTPGet.Path] || pr.HTTPGet.Port != p.Ports[0].Name {
			t.Errorf("%s probe %+v: path not served or port not %s", name, pr.HTTPGet, p.Ports[0].Name)
		}
	}
	if p.LivenessProbe != nil && p.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("liveness must use /healthz: /readyz fails while models reload")
	}
	if p.ReadinessProbe != nil && p.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("readiness must use /readyz")
	}
	for _, c := range []container{p, app} {
		if c.Resources.Limits["cpu"] == "" || c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
			t.Errorf("%s: resource requests/limits missing", c.Name)
		}
	}
	shutdown, err := time.ParseDuration(vals["shutdown-timeout"])
	if err != nil {
		t.Fatalf("--shutdown-timeout: %v", err)
	}
	if time.Duration(pod.Spec.Grace)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %d ≤ --shutdown-timeout %s: in-flight requests would be killed", pod.Spec.Grace, shutdown)
	}
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
	TimeoutSeconds   int `yaml:"timeoutSeconds"`
}

type container struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Args          []string `yaml:"args"`
	Env           []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe    *probe         `yaml:"startupProbe"`
	ReadinessProbe  *probe         `yaml:"readinessProbe"`
	LivenessProbe   *probe         `yaml:"livenessProbe"`
	SecurityContext map[string]any `yaml:"securityContext"`
}
