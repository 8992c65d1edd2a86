// Command hostvm-runner is the guest half of tests/hostvm: started by the test
// VM's systemd (hostvm-runner.service, scripts/build-hostvm), it reads one JSON
// request a line from a virtio-serial port, runs its script with bash, and
// answers with the script's stdout, stderr and exit code, one request at a
// time. It greets the host once the port is open, so the host knows the guest
// is up. No network and no keys: the port is the only way in.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Request and Response are the wire format (tests/hostvm/vm_test.go has the same).
type Request struct {
	ID      int    `json:"id"`
	Script  string `json:"script"`
	Timeout int    `json:"timeout"` // seconds
}

type Response struct {
	ID     int    `json:"id"`
	Hello  string `json:"hello,omitempty"`
	Stdout []byte `json:"stdout"`
	Stderr []byte `json:"stderr"`
	Code   int    `json:"code"`
	Err    string `json:"err,omitempty"`
}

const maxOut = 4 << 20

type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxOut - c.Len(); room > 0 {
		if len(p) > room {
			c.Buffer.Write(p[:room])
		} else {
			c.Buffer.Write(p)
		}
	}
	return len(p), nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hostvm-runner PORT")
		os.Exit(2)
	}
	port, err := os.OpenFile(os.Args[1], os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostvm-runner:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(port)
	var uts syscall.Utsname
	syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	if err := enc.Encode(Response{Hello: string(rel)}); err != nil {
		fmt.Fprintln(os.Stderr, "hostvm-runner:", err)
		os.Exit(1)
	}
	r := bufio.NewReaderSize(port, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			// The host end is not connected: wait for it.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "hostvm-runner:", err)
			os.Exit(1)
		}
		var req Request
		if err := json.Unmarshal(line, &req); err != nil {
			enc.Encode(Response{ID: -1, Code: -1, Err: "bad request: " + err.Error()})
			continue
		}
		enc.Encode(run(req))
	}
}

func run(req Request) Response {
	if req.Timeout <= 0 {
		req.Timeout = 300
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.Timeout)*time.Second)
	defer cancel()
	cmd := exec.Command("/bin/bash", "-c", req.Script)
	cmd.Dir = "/root"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A daemon the script left behind may hold the pipes: do not wait for it.
	cmd.WaitDelay = 5 * time.Second
	var out, errb capped
	cmd.Stdout, cmd.Stderr = &out, &errb
	resp := Response{ID: req.ID}
	if err := cmd.Start(); err != nil {
		resp.Code, resp.Err = -1, err.Error()
		return resp
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		resp.Err = fmt.Sprintf("timed out after %ds", req.Timeout)
	}
	resp.Stdout, resp.Stderr = out.Bytes(), errb.Bytes()
	resp.Code = cmd.ProcessState.ExitCode()
	if err != nil && resp.Err == "" {
		if _, ok := err.(*exec.ExitError); !ok {
			resp.Err = err.Error()
		}
	}
	return resp
}
