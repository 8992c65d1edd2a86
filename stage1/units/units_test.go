package units

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	root := t.TempDir()
	if err := Write(root, Options{Apps: []App{{Name: "web", MemoryMax: 1 << 20, CPUQuota: 50}}}); err != nil {
		t.Fatal(err)
	}
	svc, _ := os.ReadFile(filepath.Join(root, Dir, ServiceName("web")))
	for _, want := range []string{"SuccessAction=exit-force", "FailureAction=exit-force", "Conflicts=shutdown.target",
		"ExecStart=" + AppExecPath + " web", "ExecStopPost=" + AppExitedPath + " web", "MemoryMax=1048576", "CPUQuota=50%"} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("service lacks %q:\n%s", want, svc)
		}
	}
	// The [Unit] section carries the actions: in [Service] systemd drops them.
	if strings.Index(string(svc), "SuccessAction") > strings.Index(string(svc), "[Service]") {
		t.Error("SuccessAction is not in [Unit]")
	}
	target, _ := os.ReadFile(filepath.Join(root, Dir, Target))
	if !strings.Contains(string(target), "Wants="+ServiceName("web")) {
		t.Errorf("target: %s", target)
	}

	root = t.TempDir()
	Write(root, Options{Apps: []App{{Name: "a"}, {Name: "b"}}})
	svc, _ = os.ReadFile(filepath.Join(root, Dir, ServiceName("a")))
	if strings.Contains(string(svc), "SuccessAction") || !strings.Contains(string(svc), "FailureAction=exit\n") {
		t.Errorf("multi-app service:\n%s", svc)
	}
}
