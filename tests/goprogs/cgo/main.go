// Test target for observer's Go binary inspection: a cgo program (links libc through gcc), which
// parks a goroutine on a channel in main.cgoWaiter after calling into C, then prints "ready" and
// sleeps until killed.
package main

/*
#include <stdlib.h>
static int twice(int x) { return 2 * x; }
*/
import "C"

import (
	"fmt"
	"time"
)

//go:noinline
func cgoWaiter(ch chan int) {
	ch <- int(C.twice(21))
	<-ch
}

func main() {
	ch := make(chan int)
	go cgoWaiter(ch)
	fmt.Println("ready", <-ch)
	time.Sleep(time.Hour)
}
