// goparks: a Go program whose goroutines park and get readied as fast as they can, for measuring
// what observer's goroutine uprobes (runtime.gopark, runtime.ready) cost.
//
// Usage: goparks [-seconds 2] [-pairs 4] [-lockers 4] [-idle N]
//
// -pairs pairs of goroutines ping-pong a token over two unbuffered channels: every hop parks
// the receiver (chan receive) and readies it from the sender. -lockers goroutines contend on one
// sync.Mutex with a short critical section, so the slow path parks them on the mutex semaphore
// (sync.Mutex.Lock) and Unlock readies the next one. It prints one line:
// "goparks: secs=T pingpong_per_sec=X mutex_per_sec=Y ops_per_sec=X+Y".
// -idle N parks N more goroutines on a channel receive for the whole run (what a goroutine
// snapshot reads) and prints "goparks: idle=N ready" once they are all parked.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func pingPong(stop *atomic.Bool, count *atomic.Uint64, wg *sync.WaitGroup) {
	ping := make(chan int)
	pong := make(chan int)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	go func() {
		defer wg.Done()
		var n uint64
		v := 0
		for !stop.Load() {
			ping <- v
			v = <-pong
			n++
		}
		close(ping)
		for range pong {
		}
		count.Add(n)
	}()
}

var (
	mu     sync.Mutex
	shared uint64
)

func locker(stop *atomic.Bool, count *atomic.Uint64, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		var n uint64
		x := uint64(88172645463325252)
		for !stop.Load() {
			mu.Lock()
			// Hold the lock for a little work so that the others queue and park on it.
			for i := 0; i < 200; i++ {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
			}
			shared += x & 1
			mu.Unlock()
			n++
		}
		count.Add(n)
	}()
}

func main() {
	seconds := flag.Float64("seconds", 2, "how long to run")
	pairs := flag.Int("pairs", 4, "ping-pong goroutine pairs")
	lockers := flag.Int("lockers", 4, "goroutines contending on one sync.Mutex")
	idle := flag.Int("idle", 0, "goroutines parked on a channel receive for the whole run")
	flag.Parse()
	if *seconds <= 0 || *pairs < 0 || *lockers < 0 || *idle < 0 {
		fmt.Fprintln(os.Stderr, "goparks: -seconds must be > 0, -pairs and -lockers >= 0")
		os.Exit(2)
	}

	var stop atomic.Bool
	var pp, mx atomic.Uint64
	var wg sync.WaitGroup
	if *idle > 0 {
		release := make(chan struct{})
		var parked sync.WaitGroup
		for i := 0; i < *idle; i++ {
			parked.Add(1)
			go func() {
				parked.Done()
				<-release
			}()
		}
		parked.Wait()
		time.Sleep(100 * time.Millisecond) // the last ones reach their receive
		fmt.Printf("goparks: idle=%d ready\n", *idle)
		defer close(release)
	}
	start := time.Now()
	for i := 0; i < *pairs; i++ {
		pingPong(&stop, &pp, &wg)
	}
	for i := 0; i < *lockers; i++ {
		locker(&stop, &mx, &wg)
	}
	time.Sleep(time.Duration(*seconds * float64(time.Second)))
	stop.Store(true)
	wg.Wait()
	secs := time.Since(start).Seconds()
	p, m := float64(pp.Load())/secs, float64(mx.Load())/secs
	fmt.Printf("goparks: secs=%.3f pingpong_per_sec=%.0f mutex_per_sec=%.0f ops_per_sec=%.0f\n",
		secs, p, m, p+m)
}
