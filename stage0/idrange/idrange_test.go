package idrange

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/skiff-project/skiff/stage1/abi"
)

const size = 65536

func newAllocator(t *testing.T, pool abi.IDRange, alive func(Lease) bool) *Allocator {
	t.Helper()
	if alive == nil {
		alive = func(Lease) bool { return true }
	}
	return &Allocator{Dir: filepath.Join(t.TempDir(), "userns"), Pool: pool, Size: size, Alive: alive}
}

func lease(n int) Lease { return Lease{Pod: fmt.Sprintf("pod-%d", n), DataDir: "/data"} }

func TestAllocateLowestFreeAndRelease(t *testing.T) {
	a := newAllocator(t, DefaultPool, nil)
	r1, err := a.Allocate(lease(1))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.Allocate(lease(2))
	if err != nil {
		t.Fatal(err)
	}
	if r1 != (abi.IDRange{Base: 0x80000, Size: size}) || r2 != (abi.IDRange{Base: 0x90000, Size: size}) {
		t.Fatalf("ranges %v %v, want the pool's first two", r1, r2)
	}
	// Releasing someone else's range, or a range twice, changes nothing.
	if err := a.Release(r1, "pod-2"); err != nil {
		t.Fatal(err)
	}
	if r3, _ := a.Allocate(lease(3)); r3.Base != 0xa0000 {
		t.Fatalf("after a release by the wrong pod: %v", r3)
	}
	if err := a.Release(r1, "pod-1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(r1, "pod-1"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if r4, _ := a.Allocate(lease(4)); r4 != r1 {
		t.Fatalf("released range not handed out again: got %v, want %v", r4, r1)
	}
}

func TestConcurrentAllocationsAreDisjoint(t *testing.T) {
	a := newAllocator(t, DefaultPool, nil)
	var wg sync.WaitGroup
	got := make([]abi.IDRange, 20)
	errs := make([]error, len(got))
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second Allocator on the same directory: another skiff.
			b := *a
			got[i], errs[i] = b.Allocate(lease(i))
		}()
	}
	wg.Wait()
	seen := map[uint32]int{}
	for i, r := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if j, dup := seen[r.Base]; dup {
			t.Fatalf("pods %d and %d both got %v", i, j, r)
		}
		seen[r.Base] = i
	}
}

func TestReservedRangesAreSkipped(t *testing.T) {
	a := newAllocator(t, DefaultPool, nil)
	// Debian's useradd gives users 100000+65536*k; the 7th overlaps the pool's first range.
	a.Reserved = []abi.IDRange{{Base: 100000 + 6*size, Size: size}, {Base: 0x90000, Size: 1}}
	r, err := a.Allocate(lease(1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Base != 0xa0000 {
		t.Fatalf("got %v, want the first range clear of reserved ids (0xa0000)", r)
	}
}

func TestLeasesOfVanishedPodsAreTakenBack(t *testing.T) {
	gone := map[string]bool{}
	a := newAllocator(t, DefaultPool, func(l Lease) bool { return !gone[l.Pod] })
	r1, _ := a.Allocate(lease(1))
	if _, err := a.Allocate(lease(2)); err != nil {
		t.Fatal(err)
	}
	gone["pod-1"] = true
	r3, err := a.Allocate(lease(3))
	if err != nil || r3 != r1 {
		t.Fatalf("got %v, %v; want pod-1's range %v back", r3, err, r1)
	}
	if entries, _ := os.ReadDir(a.Dir); len(entries) != 2 {
		t.Errorf("%d lease files, want 2", len(entries))
	}
}

func TestExhaustion(t *testing.T) {
	a := newAllocator(t, abi.IDRange{Base: 0x80000, Size: 2 * size}, nil)
	for i := 0; i < 2; i++ {
		if _, err := a.Allocate(lease(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Allocate(lease(9)); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third allocation from a pool of two: %v, want ErrExhausted", err)
	}
}

func TestSubIDs(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subuid")
	os.WriteFile(sub, []byte("alice:100000:65536\n# comment\nbob:165536:65536\nbroken line\n"), 0o644)
	got := SubIDs(sub, filepath.Join(dir, "absent"))
	want := []abi.IDRange{{Base: 100000, Size: 65536}, {Base: 165536, Size: 65536}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SubIDs = %v, want %v", got, want)
	}
}
