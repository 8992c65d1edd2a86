package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Version is the protocol version this package speaks. A request carries the
// host's version; the guest serves versions 1 to Version and answers any other
// with an error frame, so a host and a guest from different stage1 builds fail
// loudly instead of misreading each other.
const Version = 1

// Operations named by a request.
const (
	opExec   = "exec"
	opSignal = "signal"
	opStop   = "stop"
	opStdin  = "stdin"
)

// frameType is the first byte of a frame. Types 0x0X travel host to guest,
// 0x1X guest to host, 0x2X on the guest's hello stream.
type frameType uint8

const (
	frameRequest  frameType = 0x01 // JSON request; the first frame of a stream
	frameStdin    frameType = 0x02 // bytes for the command's (or app's) stdin
	frameStdinEOF frameType = 0x03 // no more stdin; empty
	frameResize   frameType = 0x04 // window size: rows, cols (uint16 each)
	frameSignal   frameType = 0x05 // uint32 signal number for an exec's command
	frameStdout   frameType = 0x11 // command output
	frameStderr   frameType = 0x12 // command error output
	frameAck      frameType = 0x13 // uint32: stdin bytes the guest consumed
	frameExit     frameType = 0x14 // int32 exit code (0 for ops other than exec); the last frame
	frameError    frameType = 0x15 // int32 exit code, then a UTF-8 message; the last frame
	frameHello    frameType = 0x21 // JSON hello; the guest's first stream
)

// Size limits. A frame's payload is at most maxPayload bytes; data frames are
// written in chunks of at most chunkSize; at most stdinWindow bytes of stdin
// are unacknowledged at any time (the guest refuses more).
const (
	headerLen   = 5
	maxPayload  = 1 << 20
	chunkSize   = 32 << 10
	stdinWindow = 256 << 10
)

// ErrProtocol is wrapped by every error about a malformed frame or a frame
// that is not allowed where it came.
var ErrProtocol = errors.New("agent protocol error")

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// payloadSize gives the size a frame type's payload must have (fixed) or may
// have at most (max), and whether the type is known.
func payloadSize(t frameType) (fixed, max int, known bool) {
	switch t {
	case frameStdinEOF:
		return 0, 0, true
	case frameResize, frameAck, frameExit, frameSignal:
		return 4, 4, true
	case frameError:
		return -1, maxPayload, true
	case frameRequest, frameHello, frameStdin, frameStdout, frameStderr:
		return -1, maxPayload, true
	}
	return 0, 0, false
}

// appendFrame appends one encoded frame to b.
func appendFrame(b []byte, t frameType, payload []byte) []byte {
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// readFrame reads one frame. A clean end of r before a frame starts is io.EOF;
// an end inside a frame is io.ErrUnexpectedEOF; an unknown type, an oversized
// payload or a fixed-size payload of the wrong size wraps ErrProtocol.
func readFrame(r io.Reader) (frameType, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t, n := frameType(h[0]), binary.BigEndian.Uint32(h[1:])
	fixed, max, known := payloadSize(t)
	switch {
	case !known:
		return 0, nil, protocolErrorf("unknown frame type %#02x", h[0])
	case n > uint32(max):
		return 0, nil, protocolErrorf("frame type %#02x of %d bytes (at most %d)", h[0], n, max)
	case fixed >= 0 && n != uint32(fixed):
		return 0, nil, protocolErrorf("frame type %#02x of %d bytes (must be %d)", h[0], n, fixed)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, p, nil
}

// request is the first frame of every host-opened stream: the protocol
// version and one operation with its arguments.
type request struct {
	Version int            `json:"version"`
	Op      string         `json:"op"`
	Exec    *ExecRequest   `json:"exec,omitempty"`
	Signal  *signalRequest `json:"signal,omitempty"`
	Stop    *StopRequest   `json:"stop,omitempty"`
	Stdin   *stdinRequest  `json:"stdin,omitempty"`
}

// hello is what the guest says on a stream of its own each time Serve starts.
type hello struct {
	Version int `json:"version"`
}

// ExecRequest describes a command to run inside an app (op "exec").
type ExecRequest struct {
	// App names the app whose rootfs, environment and identity the
	// command gets.
	App string `json:"app"`
	// Args is the command and its arguments; Args[0] is looked up in the
	// app's PATH when it has no slash.
	Args []string `json:"args"`
	// Env holds KEY=VALUE entries added to the app's environment (a key
	// already there is replaced).
	Env []string `json:"env,omitempty"`
	// Process, when set, is an OCI process spec (JSON; skiff-oci exec)
	// run instead of Args with app-exec --process: its args, env, cwd,
	// user, capabilities (at most the app's), rlimits, no_new_privs. Args
	// then repeats its args.
	Process json.RawMessage `json:"process,omitempty"`
	// TTY runs the command on a new pseudo-terminal: stdin and the
	// command's stdout and stderr all go through it and reach the host as
	// stdout; nothing comes on stderr.
	TTY bool `json:"tty,omitempty"`
	// Window is the terminal's initial size (TTY only; zero: unknown).
	Window Winsize `json:"window,omitzero"`
}

// StopRequest asks the guest to stop the pod (op "stop").
type StopRequest struct {
	// Force kills the apps at once (SIGKILL) instead of SIGTERM first.
	Force bool `json:"force,omitempty"`
	// Grace is how long the apps get between SIGTERM and SIGKILL; zero:
	// the guest's default. Nanoseconds on the wire.
	Grace time.Duration `json:"grace,omitempty"`
}

type signalRequest struct {
	App    string `json:"app,omitempty"` // empty: every app
	Signal string `json:"signal"`        // a name as unix.SignalName gives it: "SIGHUP"
}

type stdinRequest struct {
	App string `json:"app"`
}

// Winsize is a terminal's size in characters.
type Winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

func (w Winsize) encode() []byte {
	b := binary.BigEndian.AppendUint16(nil, w.Rows)
	return binary.BigEndian.AppendUint16(b, w.Cols)
}

func decodeWinsize(p []byte) Winsize {
	return Winsize{Rows: binary.BigEndian.Uint16(p), Cols: binary.BigEndian.Uint16(p[2:])}
}

func encodeCode(code int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(int32(code))) }

func decodeCode(p []byte) int { return int(int32(binary.BigEndian.Uint32(p))) }

// encodeError encodes an error frame's payload: the exit code the host
// should report, then the message (cut to fit a frame).
func encodeError(code int, msg string) []byte {
	if len(msg) > maxPayload-4 {
		msg = msg[:maxPayload-4]
	}
	return append(encodeCode(code), msg...)
}

// maxErrorMessage bounds the message of an error frame the host shows.
const maxErrorMessage = 4 << 10

// decodeError decodes an error frame. The guest is hostile and the message
// goes to the user's terminal: it is cut to maxErrorMessage bytes, and
// control characters (escape sequences, carriage returns, newlines: it is
// one line) become "?", invalid UTF-8 U+FFFD.
func decodeError(p []byte) (*RemoteError, error) {
	if len(p) < 4 {
		return nil, protocolErrorf("error frame of %d bytes (at least 4)", len(p))
	}
	msg := p[4:]
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	var b strings.Builder
	for len(msg) > 0 {
		r, size := utf8.DecodeRune(msg)
		msg = msg[size:]
		switch {
		case r == utf8.RuneError && size <= 1:
			r = utf8.RuneError
		case unicode.IsControl(r), !unicode.IsPrint(r) && r != ' ':
			r = '?'
		}
		b.WriteRune(r)
	}
	return &RemoteError{Code: decodeCode(p), Message: b.String()}, nil
}

// decodeRequest parses a request frame and checks that it names an
// operation with its arguments. A request of a version this guest does not
// serve, or with an unknown operation, is an error whose text the host shows.
func decodeRequest(p []byte) (*request, error) {
	var req request
	if err := json.Unmarshal(p, &req); err != nil {
		return nil, protocolErrorf("request: %v", err)
	}
	if req.Version < 1 || req.Version > Version {
		return nil, fmt.Errorf("the host speaks agent protocol version %d, this guest %d: the stage1 image's host and guest binaries differ", req.Version, Version)
	}
	var ok bool
	switch req.Op {
	case opExec:
		ok = req.Exec != nil && len(req.Exec.Args) > 0
	case opSignal:
		ok = req.Signal != nil
		if ok && unix.SignalNum(req.Signal.Signal) == 0 {
			return nil, fmt.Errorf("unknown signal %q", req.Signal.Signal)
		}
	case opStop:
		ok = req.Stop != nil
	case opStdin:
		ok = req.Stdin != nil
	default:
		return nil, fmt.Errorf("unknown operation %q (this guest's agent speaks protocol version %d: %s, %s, %s, %s)",
			req.Op, Version, opExec, opSignal, opStop, opStdin)
	}
	if !ok {
		return nil, protocolErrorf("request %q without its arguments", req.Op)
	}
	return &req, nil
}

// RemoteError is an error the guest reported: its message, and the exit code
// the host should use for it (125 when the agent or the guest failed, 126 or
// 127 when the command could not be executed or found).
type RemoteError struct {
	Code    int
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// decodeSignal decodes a signal frame: a signal this kernel has a name for
// (1 to 64), else a protocol error.
func decodeSignal(p []byte) (syscall.Signal, error) {
	n := decodeCode(p)
	if n < 1 || n > 64 {
		return 0, protocolErrorf("signal frame with signal %d", n)
	}
	return syscall.Signal(n), nil
}

// signalName gives sig's name for the wire ("SIGHUP").
func signalName(sig syscall.Signal) string { return unix.SignalName(sig) }
