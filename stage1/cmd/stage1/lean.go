package main

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

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
