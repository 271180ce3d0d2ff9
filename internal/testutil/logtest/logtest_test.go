package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWriteAndRead(t *testing.T) {
	t.Parallel()
	var b Buffer
	log := b.Logger()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for j := 0; j < 50; j++ {
				log.Error("line", "n", j)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "level=ERROR msg=line"); n != 200 {
		t.Errorf("%d lines, want 200", n)
	}
}
