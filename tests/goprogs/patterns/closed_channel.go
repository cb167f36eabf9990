// A producer sends on a channel that the consumer side already closed: the runtime panics with
// "send on closed channel" and the process dies with exit code 2. Its stderr goes nowhere in
// production; observer's process_exit must carry the message.
package main

import "time"

//go:noinline
func produce(out chan<- int) {
	for i := 0; ; i++ {
		out <- i
		time.Sleep(20 * time.Millisecond)
	}
}

func main() {
	ch := make(chan int)
	go produce(ch)
	<-ch
	<-ch
	close(ch)
	time.Sleep(time.Second)
}
