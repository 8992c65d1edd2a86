// Package agent is the kvm stage1's channel between the host and the guest
// agent that runs commands inside apps (enter), stops the pod, forwards
// signals to the apps and feeds an interactive app's stdin. This file set
// holds its wire protocol.
//
// Every request travels on a stream of its own. Both directions of a stream
// are a sequence of frames:
//
//	type    uint8
//	length  uint32, big endian (at most 1 MiB)
//	payload [length]byte
//
// Host to guest: 0x01 request (JSON, the first frame), 0x02 stdin, 0x03
// stdin-eof (empty), 0x04 resize (rows, cols: uint16 each). Guest to host:
// 0x11 stdout, 0x12 stderr, 0x13 ack (uint32: stdin bytes consumed), 0x14
// exit (int32 code; the last frame), 0x15 error (int32 code, then a UTF-8
// message; the last frame). 0x21 hello (JSON) is the guest's greeting.
// A request carries the protocol version; the guest refuses versions and
// operations it does not know with an error frame.
package agent
