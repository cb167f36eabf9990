// A cache refresher holds the cache mutex across a slow "network" call (1.5s); request handlers
// that need the cache wait on the mutex. observer must report goroutine_wait (and
// goroutine_stall with a short --stall-after) naming lookupCache and refreshCache.
package main

import (
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	cacheMu sync.Mutex
	cache   = map[string]int{}
)

//go:noinline
func slowBackendCall() int {
	time.Sleep(1500 * time.Millisecond) // stands for a slow RPC
	return 42
}

//go:noinline
func refreshCache() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	cache["answer"] = slowBackendCall() // lock held across slow I/O
}

//go:noinline
func lookupCache(key string) int {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	return cache[key]
}

func main() {
	secs := 4
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	go func() {
		for {
			refreshCache()
			time.Sleep(500 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		lookupCache("answer")
	}
}
