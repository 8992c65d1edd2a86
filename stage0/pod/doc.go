// Package pod keeps skiff's pods on disk without a daemon: a pod's state is the
// directory it lives in under DATADIR/pods plus whether its lock is held.
// Moves are rename(2) within one filesystem; the lock is flock(2) on the pod
// directory itself, so it follows the directory through every rename.
//
//	directory             lock held            lock free
//	embryo/UUID           (New, briefly)       Embryo (gc: stale after a minute → garbage)
//	prepare/UUID          Preparing            AbandonedPrepare (gc → garbage)
//	prepared/UUID         Prepared (lock held while being started or removed)
//	run/UUID              Running (by stage1)  Exited (gc → exited-garbage)
//	exited-garbage/UUID   ExitedGarbage (swept by gc after the grace period)
//	garbage/UUID          Garbage (failed preparation, rm; swept by the next gc)
//
// The edges (the table in state.go), each taken by Transition with the
// pod's exclusive lock held; Running → Exited is stage1 letting go of it:
//
//	Embryo ─▶ Preparing ─▶ Prepared ─▶ Running ┄┄▶ Exited ─▶ ExitedGarbage
//	   │        │   │         │   ▲                  │             │
//	   │        │   └─────────┼───┘ (run)            │             │
//	   ▼        ▼             ▼                      ▼             ▼
//	 Garbage ◀──────────────────────────────────────────────────────
//	   ▲
//	AbandonedPrepare (gc)
//
// Running and Exited (like Preparing and AbandonedPrepare) share a directory:
// they are told apart by a non-blocking lock probe, never stored. A running
// pod is never moved: every rename happens under the exclusive lock, which a
// running pod's stage1 holds on an inherited descriptor (abi.EnvLockFD).
//
// GC is rkt-style mark and sweep: exited pods are renamed to exited-garbage
// (their mtime records the marking), and a later pass, past the grace period,
// locks each one, lets stage1 gc undo what it did on the host, detaches any
// mount still below the pod directory, and removes the tree. Concurrent
// readers and collectors tolerate pods moving or vanishing under them.
package pod
