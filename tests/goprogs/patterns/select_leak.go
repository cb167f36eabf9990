// Each request starts a goroutine whose select ignores ctx.Done(): when the caller gives up, the
// goroutine stays parked forever. Goroutines from that site keep piling up: goroutine_leak.
package main

import (
	"context"
	"os"
	"strconv"
	"time"
)

//go:noinline
func fetchResult(ctx context.Context, results chan<- int) {
	never := make(chan int)
	select {
	case v := <-never: // the backend never answers
		results <- v
		// missing: case <-ctx.Done(): return
	}
}

//go:noinline
func handleRequest() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	results := make(chan int, 1)
	go fetchResult(ctx, results)
	select {
	case <-results:
	case <-ctx.Done():
	}
}

func main() {
	secs := 10
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		handleRequest()
		time.Sleep(40 * time.Millisecond)
	}
}
