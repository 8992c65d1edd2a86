// Package agent is the kvm stage1's channel between the host and the guest:
// the guest agent that runs commands inside apps (enter), stops the pod,
// forwards signals to the apps and feeds an interactive app's stdin, and the
// host side that reaches it.
//
// # Transport
//
// One virtio-serial port (PortName) carries a yamux session
// (github.com/hashicorp/yamux); every request is a yamux stream of its own.
// The host is the yamux client, the guest the server. (The host kernel has
// no vhost-vsock, hence a serial port and a multiplexer, as kata-agent did.)
// On the host, the long-lived run process owns the port's host end and runs
// a Broker: it listens on a unix socket in the pod directory (SocketFile)
// and splices each connection to a new yamux stream, byte for byte, so
// short-lived processes (enter, stop) speak the protocol below over a plain
// unix connection through a Client. In the guest, Serve accepts the streams
// and calls the Handler the guest init implements; RunCmd is the common body
// of its Exec.
//
//	enter ──unix──┐                                   ┌─ stream ─ Handler.Exec ─ RunCmd
//	stop  ──unix──┼── Broker (run) ══ yamux over ═════┼─ stream ─ Handler.Stop
//	run's Client ─┘                   skiff.agent     └─ stream ─ Handler.Stdin
//
// Host, in run (QEMU gets the other end of a socketpair):
//
//	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
//	// QEMU: ExtraFiles fds[1] as fd N, -chardev socket,id=agent,fd=N
//	//       -device virtserialport,chardev=agent,name=skiff.agent
//	f := os.NewFile(uintptr(fds[0]), "agent"); conn, _ := net.FileConn(f); f.Close()
//	b, err := agent.NewBroker(conn, filepath.Join(podDir, agent.SocketFile))
//	defer b.Close()                            // once QEMU has exited
//	<-b.Ready()                                // optional: the agent serves
//	err = b.Client().Stdin(ctx, app, os.Stdin) // run's own calls
//
// Host, in enter (stop alike, with Client.Stop):
//
//	req := agent.ExecRequest{App: app, Args: args}
//	stdio := agent.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
//	if t, err := agent.MakeRaw(os.Stdin); err == nil { // a terminal
//		defer t.Restore()
//		req.TTY, req.Window, stdio.Resize = true, t.Size(), t.Resize()
//	}
//	code, err := agent.NewClient(filepath.Join(podDir, agent.SocketFile)).Exec(ctx, req, stdio)
//	// err != nil: print it; exit with code either way (125, or the guest's 126/127)
//
// Guest, in the init (a devpts must be mounted at /dev/pts for ttys):
//
//	port, err := agent.OpenPort(agent.PortName, 5*time.Second)
//	err = agent.Serve(port, handler) // returns once port is closed (or fails)
//	// handler.Exec: build an *exec.Cmd for the app (chroot, user, env), then
//	//	return agent.RunCmd(ctx, cmd, req, stdio, agent.CmdOptions{})
//
// # Frames
//
// Both directions of a stream are a sequence of frames:
//
//	type    uint8
//	length  uint32, big endian (at most 1 MiB)
//	payload [length]byte
//
// Host to guest:
//
//	0x01 request    JSON, the first frame: {"version":1,"op":"exec","exec":{...}}
//	0x02 stdin      bytes for the command's or the app's stdin
//	0x03 stdin-eof  empty: no more stdin
//	0x04 resize     rows, cols: uint16 each, big endian (exec with tty)
//	0x05 signal     uint32 signal number (1-64) for an exec's command: a
//	                signal enter got, passed on as itself (RunCmd)
//
// Guest to host:
//
//	0x11 stdout     output bytes (with a tty: everything the terminal shows)
//	0x12 stderr     error output bytes
//	0x13 ack        uint32: that many stdin bytes were consumed
//	0x14 exit       int32 exit code; the last frame (0 for ops other than exec)
//	0x15 error      int32 exit code, then a UTF-8 message; the last frame
//
// and, on a stream the guest opens each time Serve starts, one 0x21 hello
// frame, JSON {"version":1}. The broker takes the first as "the agent is up"
// (Broker.Ready); a later one means the agent restarted with a fresh session,
// and the broker ends every stream opened before it (ErrDisconnected).
//
// Requests (version 1; the guest refuses other versions and unknown
// operations with an error frame that says what it speaks):
//
//	{"version":1,"op":"exec","exec":{"app":"web","args":["sh"],"env":["TERM=xterm"],"tty":true,"window":{"rows":24,"cols":80}}}
//	{"version":1,"op":"signal","signal":{"app":"web","signal":"SIGHUP"}}   app empty: every app
//	{"version":1,"op":"stop","stop":{"force":false,"grace":10000000000}}   grace in nanoseconds
//	{"version":1,"op":"stdin","stdin":{"app":"web"}}
//
// Stdin is flow-controlled: the host keeps at most 256 KiB of stdin
// unacknowledged and the guest acks what the handler has read, so a command
// that does not read its stdin never holds up resizes, the hangup or the
// other streams. Stdin-eof closes a command's stdin pipe; with a tty, RunCmd
// sends the terminal's EOF character if the terminal is in canonical mode.
//
// # Ends of a stream
//
// The guest ends every request with exactly one exit or error frame and then
// closes its side; for exec, the command's output is all sent before the exit
// frame (RunCmd stops waiting for output held open by a process left in the
// background after a short grace). A stream that ends without that frame (the
// VM stopped, the port closed, the agent restarted) is ErrDisconnected on the
// host; a call after the VM's end gets an error frame from the broker saying
// so, and one after Broker.Close finds no socket (ErrNoAgent).
//
// The host's end of a stream before the last frame is a hangup: Serve
// cancels the Handler's context and fails its stdin with ErrHangup. RunCmd
// then does what sshd does: SIGHUP to the command's process group and its own
// ends of the stdio closed (a pty hung up; writes to pipes fail), and returns
// ErrHangup without waiting; a command that survives is reaped when it ends
// (CmdOptions.KillAfterHangup SIGKILLs it instead, and what it left in its
// group once it ends: the pod agent's OCI exec does; CmdOptions.Reaper is
// closed at once, and app-exec's reaper kills all the command started: the
// pod agent's enter). In the guest nothing
// stays behind a finished stream but the reaper of such a survivor; on the
// host, a Read of the caller's stdin in progress is left to return (a
// terminal: at the next key) and dropped.
//
// A frame that is malformed, oversized, or not allowed in its direction is a
// protocol error (ErrProtocol) that ends its stream only. A closed port ends
// the yamux session and so every stream. An agent that dies in the middle of
// a frame leaves the byte stream out of step: the next agent's session fails
// on the first frame it misreads, and the pod needs a restart.
package agent
