package networking

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// failPlugin is a CNI plugin whose ADD fails with a two-line message.
const failPlugin = `#!/bin/sh
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","code":11,"msg":"induced failure","details":"line one\\nline two"}'; exit 1;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}';;
esac
exit 0
`

// Each bad input or failure gives a one-line error naming the network or
// port and the cause, and leaves nothing behind (newEnv's leak check).
func TestSetupFailuresLeaveNothing(t *testing.T) {
	cases := []struct {
		name string
		prep func(e *testEnv, r *Request)
		want []string // substrings of the error
		is   error
	}{
		{"unknown network", func(e *testEnv, r *Request) { r.Networks = []Attachment{{Name: "nosuch"}} },
			[]string{`network "nosuch"`, "no .conflist"}, ErrUnknownNetwork},
		{"malformed conflist", func(e *testEnv, r *Request) {
			e.writeConf("10-bad.conflist", `{"cniVersion":"1.0.0","name":"bad","plugins":[{"nope":1}]}`)
			r.Networks = []Attachment{{Name: "bad"}}
		}, []string{`network "bad"`, "malformed", "10-bad.conflist", "type"}, nil},
		{"broken json", func(e *testEnv, r *Request) { e.writeConf("10-broken.conflist", `{"name":`) },
			[]string{"malformed", "10-broken.conflist"}, nil},
		{"missing plugin", func(e *testEnv, r *Request) {
			e.writeConf("10-x.conflist", `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"nosuchplugin"}]}`)
			r.Networks = []Attachment{{Name: "x"}}
		}, []string{`network "x"`, `"nosuchplugin"`, "CNI_PATH"}, ErrPluginNotFound},
		{"plugin failure after ptp succeeded", func(e *testEnv, r *Request) {
			e.writeFailNet("failing", `{"type":"ptp","ipam":{"type":"host-local","subnet":"10.199.9.0/24","dataDir":"`+e.base.IPAMDir+`"}},{"type":"fail"}`)
			r.Networks = []Attachment{{Name: "failing"}}
		}, []string{`network "failing"`, "induced failure", "line one; line two"}, nil},
		{"second network fails after default succeeded", func(e *testEnv, r *Request) {
			e.writeFailNet("failing", `{"type":"fail"}`)
			r.Networks = []Attachment{{Name: NetDefault}, {Name: "failing"}}
			r.Ports = []PortMapping{{HostPort: freePort(e.t), PodPort: 80, Protocol: "tcp"}}
		}, []string{`network "failing"`, "induced failure"}, nil},
		{"requested IP outside the range", func(e *testEnv, r *Request) {
			r.Networks = []Attachment{{Name: NetDefault, Args: [][2]string{{"IP", "10.1.2.3"}}}}
		}, []string{`network "default"`, "10.1.2.3"}, nil},
		{"host port in use", func(e *testEnv, r *Request) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				e.t.Fatal(err)
			}
			e.t.Cleanup(func() { l.Close() })
			port := l.Addr().(*net.TCPAddr).Port
			r.Ports = []PortMapping{{HostPort: port, PodPort: 80, Protocol: "tcp"}}
		}, []string{"port ", ":80/tcp", "already in use"}, ErrPortInUse},
		{"port on a network without portmap", func(e *testEnv, r *Request) {
			e.writeConf("10-plain.conflist", `{"cniVersion":"1.0.0","name":"plain","plugins":[
			  {"type":"ptp","ipam":{"type":"host-local","subnet":"10.199.10.0/24","dataDir":"`+e.base.IPAMDir+`"}}]}`)
			r.Networks = []Attachment{{Name: "plain"}}
			r.Ports = []PortMapping{{HostPort: freePort(e.t), PodPort: 80, Protocol: "tcp"}}
		}, []string{"port ", "portMappings"}, ErrNoPortForward},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			r := e.request(NetDefault)
			c.prep(e, &r)
			_, err := Setup(context.Background(), r)
			checkErr(t, err, c.want, c.is)
			if _, err := os.Stat(filepath.Join(r.StateDir, stateFile)); err == nil {
				t.Error("state left behind after a failed Setup")
			}
		})
	}
}

// A tiny subnet: the second pod finds no free address; the first is fine.
func TestAddressExhaustion(t *testing.T) {
	e := newEnv(t)
	e.writeConf("10-tiny.conflist", `{"cniVersion":"1.0.0","name":"tiny","plugins":[
	  {"type":"ptp","ipam":{"type":"host-local","subnet":"10.199.11.0/30","dataDir":"`+e.base.IPAMDir+`"}}]}`)
	e.setup(e.request("tiny"))
	_, err := Setup(context.Background(), e.request("tiny"))
	checkErr(t, err, []string{`network "tiny"`, "no IP addresses available"}, nil)
}

// The same IP= for two pods: the second fails in host-local.
func TestRequestedIPTaken(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefault)
	r.Networks[0].Args = [][2]string{{"IP", "172.16.28.77"}}
	e.setup(r)
	r2 := e.request(NetDefault)
	r2.Networks[0].Args = r.Networks[0].Args
	_, err := Setup(context.Background(), r2)
	checkErr(t, err, []string{`network "default"`, "172.16.28.77"}, nil)
}

func TestSetupTwiceRefused(t *testing.T) {
	e := newEnv(t)
	r := e.request(NetDefaultRestricted)
	e.setup(r)
	_, err := Setup(context.Background(), r)
	checkErr(t, err, []string{r.PodUUID, "tear it down first"}, ErrAlreadySetUp)
}

func checkErr(t *testing.T, err error, want []string, is error) {
	t.Helper()
	if err == nil {
		t.Fatal("Setup succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error has several lines: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %q is not %v", msg, is)
	}
	t.Log(msg)
}

func (e *testEnv) writeFailNet(name, plugins string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.pluginDir, "fail"), []byte(failPlugin), 0o755); err != nil {
		e.t.Fatal(err)
	}
	e.writeConf("10-"+name+".conflist", `{"cniVersion":"1.0.0","name":"`+name+`","plugins":[`+plugins+`]}`)
}
