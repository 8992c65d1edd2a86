package networking

import (
	"errors"
	"testing"
)

func TestMasqChainGone(t *testing.T) {
	gone := errors.New(`plugin type="ptp" failed (delete): running [/usr/sbin/iptables -t nat -D POSTROUTING -s 172.16.28.188 -j CNI-19e206b976d24fbccde3d576 -m comment --comment name: "default" --wait]: exit status 2: iptables v1.8.9 (nf_tables): Chain 'CNI-19e206b976d24fbccde3d576' does not exist; Try ` + "`iptables -h'" + ` or 'iptables --help' for more information.`)
	if !masqChainGone(gone) {
		t.Errorf("a DEL whose chain is gone is not taken as done: %v", gone)
	}
	for _, e := range []string{
		`plugin type="ptp" failed (delete): running [/usr/sbin/iptables -t nat -D POSTROUTING]: exit status 4: iptables: Resource temporarily unavailable.`,
		`plugin type="bridge" failed (delete): failed to find plugin "bridge"`,
		`netns "x" does not exist`,
	} {
		if masqChainGone(errors.New(e)) {
			t.Errorf("taken as done: %s", e)
		}
	}
}
