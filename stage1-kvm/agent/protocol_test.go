package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"unicode"
)

func TestFrameRoundTrip(t *testing.T) {
	frames := []struct {
		t frameType
		p []byte
	}{
		{frameRequest, []byte(`{"version":1,"op":"stop","stop":{}}`)},
		{frameStdin, []byte("hello")},
		{frameStdinEOF, nil},
		{frameResize, Winsize{Rows: 24, Cols: 80}.encode()},
		{frameStdout, bytes.Repeat([]byte("x"), maxPayload)},
		{frameStderr, []byte{}},
		{frameAck, encodeCode(4096)},
		{frameExit, encodeCode(-1)},
		{frameError, encodeError(127, "sh: not found")},
		{frameHello, []byte(`{"version":1}`)},
	}
	var b []byte
	for _, f := range frames {
		b = appendFrame(b, f.t, f.p)
	}
	r := bytes.NewReader(b)
	for _, f := range frames {
		typ, p, err := readFrame(r)
		if err != nil || typ != f.t || !bytes.Equal(p, f.p) {
			t.Fatalf("frame %#02x: got %#02x, %d bytes, %v", f.t, typ, len(p), err)
		}
	}
	if _, _, err := readFrame(r); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if decodeCode(encodeCode(-1)) != -1 || decodeWinsize(Winsize{Rows: 3, Cols: 65535}.encode()) != (Winsize{Rows: 3, Cols: 65535}) {
		t.Fatal("code or window size does not round-trip")
	}
	e, err := decodeError(encodeError(127, "sh: not found"))
	if err != nil || e.Code != 127 || e.Message != "sh: not found" {
		t.Fatalf("error frame: %+v, %v", e, err)
	}
}

func TestFrameErrors(t *testing.T) {
	header := func(typ byte, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{typ}, n)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown type", header(0x7f, 0), ErrProtocol},
		{"oversized", header(byte(frameStdout), maxPayload+1), ErrProtocol},
		{"huge length", header(byte(frameRequest), 0xffffffff), ErrProtocol},
		{"short exit", append(header(byte(frameExit), 2), 0, 0), ErrProtocol},
		{"stdin-eof with payload", append(header(byte(frameStdinEOF), 1), 0), ErrProtocol},
		{"truncated header", []byte{byte(frameStdout), 0, 0}, io.ErrUnexpectedEOF},
		{"truncated payload", append(header(byte(frameStdout), 10), "abc"...), io.ErrUnexpectedEOF},
	} {
		if _, _, err := readFrame(bytes.NewReader(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := decodeError([]byte{1}); !errors.Is(err, ErrProtocol) {
		t.Errorf("short error frame: %v", err)
	}
	if e, _ := decodeError(append(encodeCode(1), 0xff, 'a')); e.Message != "\uFFFDa" {
		t.Errorf("invalid UTF-8 in an error frame: %q", e.Message)
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{`{"version":1,"op":"exec","exec":{"app":"a","args":["sh"]}}`, ""},
		{`{"version":1,"op":"signal","signal":{"signal":"SIGHUP"}}`, ""},
		{`{"version":1,"op":"stop","stop":{"force":true}}`, ""},
		{`{"version":1,"op":"stdin","stdin":{"app":"a"}}`, ""},
		{`{"version":1,"op":"exec","exec":{"app":"a","args":["sh"]},"later":"field"}`, ""},
		{`{"version":1,"op":"frobnicate"}`, `unknown operation "frobnicate"`},
		{`{"version":2,"op":"exec","exec":{"args":["sh"]}}`, "protocol version 2"},
		{`{"op":"exec","exec":{"args":["sh"]}}`, "protocol version 0"},
		{`{"version":1,"op":"exec","exec":{"app":"a","args":[]}}`, "without its arguments"},
		{`{"version":1,"op":"stop"}`, "without its arguments"},
		{`{"version":1,"op":"signal","signal":{"signal":"SIGFROB"}}`, `unknown signal "SIGFROB"`},
		{`{"version":1,`, "request"},
	} {
		_, err := decodeRequest([]byte(c.in))
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.in, err, c.err)
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder and the payload
// decoders: they may fail, never panic, and what they accept re-encodes to
// the same bytes. Seeds in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameRequest, []byte(`{"version":1,"op":"exec","exec":{"app":"a","args":["sh"],"tty":true,"window":{"rows":24,"cols":80}}}`)))
	f.Add(appendFrame(appendFrame(nil, frameStdout, []byte("out")), frameExit, encodeCode(3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			typ, p, err := readFrame(r)
			if err != nil {
				return
			}
			if len(p) > maxPayload {
				t.Fatalf("payload of %d bytes accepted", len(p))
			}
			consumed := data[len(data)-before : len(data)-r.Len()]
			if !bytes.Equal(appendFrame(nil, typ, p), consumed) {
				t.Fatalf("frame %#02x does not re-encode to its bytes", typ)
			}
			switch typ {
			case frameRequest:
				_, _ = decodeRequest(p)
			case frameError:
				_, _ = decodeError(p)
			case frameResize:
				_ = decodeWinsize(p)
			case frameExit, frameAck:
				_ = decodeCode(p)
			}
		}
	})
}

// What the host's client makes of whatever a hostile guest answers: it never
// panics or hangs, and an error the guest reports reaches the user's
// terminal as one bounded line without control characters. Seeds:
// testdata/fuzz/FuzzClientAnswer.
func FuzzClientAnswer(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, frameStdout, []byte("out")), frameExit, encodeCode(3)))
	f.Add(appendFrame(nil, frameError, encodeError(127, "\x1b]0;owned\x07\x1b[2Jnot found\r\nroot# ")))
	f.Add(appendFrame(appendFrame(nil, frameAck, encodeCode(-1)), frameHello, []byte(`{"version":1}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		host, guest := net.Pipe()
		go func() {
			go func() { _, _ = io.Copy(io.Discard, guest) }()
			_, _ = guest.Write(data)
			guest.Close()
		}()
		c := &Client{dial: func(context.Context) (net.Conn, error) { return host, nil }}
		_, err := c.Exec(context.Background(), ExecRequest{App: "a", Args: []string{"sh"}},
			Stdio{Stdout: io.Discard, Stderr: io.Discard})
		var re *RemoteError
		if errors.As(err, &re) {
			if len(re.Message) > 4*maxErrorMessage {
				t.Fatalf("message of %d bytes", len(re.Message))
			}
			for _, r := range re.Message {
				if unicode.IsControl(r) {
					t.Fatalf("control character %U in %q", r, re.Message)
				}
			}
		}
	})
}
