// A worker returns early on an error path without calling wg.Done(): the coordinator waits on
// the WaitGroup forever while a heartbeat goroutine keeps the process alive (so Go's own
// "all goroutines are asleep" check never fires). observer must report goroutine_stall.
package main

import (
	"os"
	"strconv"
	"sync"
	"time"
)

//go:noinline
func processItem(i int, wg *sync.WaitGroup) {
	if i == 2 {
		return // error path: forgot wg.Done()
	}
	defer wg.Done()
	time.Sleep(10 * time.Millisecond)
}

//go:noinline
func coordinateBatch() {
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go processItem(i, &wg)
	}
	wg.Wait()
}

func main() {
	secs := 4
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	go coordinateBatch()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // heartbeat
	}
}
