// Command holder is the lock holder of the container tests (test/docker):
// it takes a lock with a session (a lease kept alive at TTL/3), prints its
// fencing token, then writes the fenced resource (package fencedkv) with
// that token every 200 ms, printing each outcome, until it is killed. It
// keeps writing after its session is lost on purpose: it plays a holder
// that was paused right after it last checked its lock, which is exactly
// what fencing must stop.
//
// Output, one line each: "token T", "write N ok", "write N stale ...",
// "write N error ...", "session lost: ...".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/test/docker/fencedkv"
)

func main() {
	endpoints := flag.String("endpoints", "n1:7101,n2:7101,n3:7101", "coordd HTTP addresses")
	name := flag.String("name", "docker-fence", "lock name")
	key := flag.String("key", "fence/resource", "the fenced key")
	ttl := flag.Duration("ttl", 2*time.Second, "session TTL")
	flag.Parse()
	if err := run(*endpoints, *name, *key, *ttl); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(endpoints, name, key string, ttl time.Duration) error {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		return err
	}
	s, err := client.NewSession(ctx, c, ttl)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m := client.NewMutex(s, name, client.LockOptions{})
	if err := m.Lock(lctx); err != nil {
		return err
	}
	tok := m.Token()
	fmt.Println("token", tok)
	go func() {
		<-s.Done()
		fmt.Println("session lost:", s.Err())
	}()
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cur, err := fencedkv.Write(wctx, c, key, tok, fmt.Sprintf("holder-%d", i))
		cancel()
		switch {
		case err == nil:
			fmt.Println("write", i, "ok")
		case errors.Is(err, fencedkv.ErrStale):
			fmt.Println("write", i, "stale: highest", cur)
		default:
			fmt.Println("write", i, "error:", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
