// probe misbehaves on purpose, to prove the emulator's sandbox holds:
//
//	probe memory   allocates and touches memory until it is killed
//	probe network  tries to reach the network and reports what it reached
//	probe hang     never returns
//	probe echo     echoes its request (a well-behaved function)
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	mode := "echo"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "memory":
		var hoard [][]byte
		for i := 0; ; i++ {
			chunk := make([]byte, 16<<20)
			for j := range chunk {
				chunk[j] = byte(j)
			}
			hoard = append(hoard, chunk)
			fmt.Printf("holding %d MiB\n", (i+1)*16)
		}
	case "network":
		for _, target := range []string{"1.1.1.1:53", "8.8.8.8:443", "10.0.2.2:80", "192.168.0.1:80"} {
			conn, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err == nil {
				fmt.Printf("REACHED %s\n", target)
				conn.Close()
				os.Exit(0)
			}
			fmt.Printf("unreachable %s: %v\n", target, err)
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			fmt.Printf("interfaces: %v\n", addrs)
		}
		os.Exit(3)
	case "hang":
		fmt.Println("hanging")
		for {
			// A sleeping goroutine, not `select {}`: Go would call that a deadlock and exit.
			time.Sleep(time.Hour)
		}
	default:
		body, _ := io.ReadAll(os.Stdin)
		os.Stdout.Write(body)
	}
}
