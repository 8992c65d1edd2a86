package main

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The supervisor never writes a memory profile, yet at the runtime's default rate
// it would sample about one allocation per 512 KiB allocated, and each sample
// walks the allocating goroutine's stack through the binary's function tables:
// pages of the binary an idle supervisor never needs otherwise, mapped again
// (whole large folios) after leanAfterStart dropped them, ~1 MiB of an idle
// pod's PSS whenever an allocation after start-up happened to be sampled
// (bench/README.md, pod-pss). Every command of this binary goes without it.
func init() { runtime.MemProfileRate = 0 }

// leanAfterStart lets go of the memory the supervisor (this process, alive
// for the pod's life) needed only to start the pod: the pages of its own
// binary that start-up touched (libcontainer, the spec, JSON: ~8 MB of page
// table mappings counted in the pod's PSS) and the heap garbage of start-up.
// Only read-only file mappings are dropped (MADV_DONTNEED on a private
// mapping that was never written just unmaps page-cache pages, which fault
// back in from the page cache when run again); nothing writable, anonymous
// or shared is touched, so no state is lost and isolation is unchanged.
func leanAfterStart() {
	type span struct{ start, end uint64 }
	var drop []span
	defer func() {
		// The garbage of reading smaps goes first; the madvise calls come
		// last, so that no runtime code runs after them to map pages again.
		debug.FreeOSMemory()
		for _, d := range drop {
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(d.start), uintptr(d.end-d.start), unix.MADV_DONTNEED)
		}
	}()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return
	}
	defer f.Close()
	var start, end uint64 // the read-only private file mapping being read, or 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// 00400000-00c00000 r-xp 00000000 fd:01 1234 /path
			start, end = 0, 0
			perms := fields[1]
			if len(fields) < 6 || !strings.HasPrefix(fields[5], "/") || len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' {
				continue // anonymous, writable or shared: kept
			}
			lo, hi, _ := strings.Cut(fields[0], "-")
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil && e > s {
				start, end = s, e
			}
		case len(fields) >= 2 && fields[0] == "Anonymous:" && end > start:
			// A page copied on write (a relocation written before the
			// mapping became read-only) would be lost: keep such mappings.
			if fields[1] == "0" {
				drop = append(drop, span{start, end})
			}
			start, end = 0, 0
		}
	}
}

// idleAfter is how long a pod stays ready before its systemd's file pages are
// paged out (watchIdle). A pod whose app ends sooner (a one-shot job, run-true)
// never gets there, so it never reads those pages back from disk on its way
// down.
const idleAfter = 10 * time.Second

// watchIdle pages out the pod's systemd's clean file pages once the pod has
// been ready for idleAfter: its binary and ~20 libraries, ~9 MB of an idle
// pod's ~15 MB, which start-up faulted in (this kernel maps whole large folios)
// and which an idle systemd does not touch. It is proactive reclaim of one
// process, as Android compacts its cached apps (process_madvise
// MADV_PAGEOUT) on its read-only file mappings: their pages this systemd alone
// maps go (the kernel keeps pages another pod's systemd also maps; on a host
// with swap, the libraries' relocated data in those mappings, a few hundred
// KB, goes to swap); systemd faults back what it needs (a stop, an app's exit)
// from the page cache, the disk or swap. Nothing is done once a stop has begun.
//
// The pidfd is taken now, before wait can reap the init: it names this
// process for good, and the kernel refuses process_madvise once it is gone.
func (r *runningPod) watchIdle() {
	pidfd, err := unix.PidfdOpen(r.c.Pid(), 0)
	if err != nil {
		r.o.Debugf("idle pages: pidfd of the pod's init: %v", err)
		return
	}
	go func() {
		defer unix.Close(pidfd)
		select {
		case <-r.ready.doneCh:
		case <-r.gone:
			return
		}
		t := time.NewTimer(idleAfter)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.gone:
			return
		}
		r.mu.Lock()
		stopping := r.stopping
		r.mu.Unlock()
		if stopping {
			return
		}
		n, err := pageOutFiles(pidfd, r.c.Pid())
		if err != nil {
			r.o.Debugf("idle pages: %d KiB of the pod's systemd paged out, then: %v", n>>10, err)
		} else {
			r.o.Debugf("idle pages: %d KiB of the pod's systemd paged out", n>>10)
		}
		leanAfterStart() // what this took of our own pages and heap
	}()
}

// pageOutFiles asks the kernel to page out the read-only private file
// mappings of the process pidfd names (its pid is pid) and returns how many
// bytes it advised. /proc/PID/maps is read only after checking that the
// process is alive through its pidfd (so the pid was not reused) and is
// bounded; whatever it says, the advice goes only to the pidfd's process.
func pageOutFiles(pidfd, pid int) (int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return 0, err // gone: the pid may name another process now
	}
	b, err := io.ReadAll(io.LimitReader(f, maxMapsBytes))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, s := range readOnlyFileMappings(b) {
		// struct iovec of the other process's addresses (not pointers of ours).
		iov := [2]uint64{s.start, s.end - s.start}
		n, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd), uintptr(unsafe.Pointer(&iov)), 1, unix.MADV_PAGEOUT, 0, 0)
		if errno == unix.ESRCH {
			return total, errno
		}
		if errno == 0 {
			total += int(n)
		}
	}
	return total, nil
}

// maxMapsBytes bounds the read of a pod process's /proc/PID/maps: systemd's
// has about 200 lines of ~120 bytes.
const maxMapsBytes = 1 << 20

// mapSpan is an address range of a mapping.
type mapSpan struct{ start, end uint64 }

// readOnlyFileMappings returns the read-only private file mappings of a
// /proc/PID/maps text ("start-end perms offset dev inode path" per line;
// inode 0 is anonymous memory or a special mapping). Malformed lines are
// skipped.
func readOnlyFileMappings(maps []byte) []mapSpan {
	var spans []mapSpan
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || len(f[1]) != 4 || f[1][1] != '-' || f[1][3] != 'p' || f[4] == "0" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			continue
		}
		spans = append(spans, mapSpan{s, e})
	}
	return spans
}
