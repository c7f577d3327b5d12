// Command leader-loop leads "report-writer" and meanwhile does fenced writes (see examples/fenced-store).
package main

import (
	"context"
	"fmt"
	"github.com/coordd/coordd/client"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	c, err := client.New(context.Background(), client.Config{Endpoints: strings.Split("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", ",")})
	if err == nil {
		err = run(context.Background(), c, "http://127.0.0.1:7400/data/report", os.Getenv("HOSTNAME"))
	}
	log.Fatal(err)
}

func run(ctx context.Context, c *client.Client, resource, me string) error {
	for ctx.Err() == nil {
		s, err := client.NewSession(ctx, c, 3*time.Second)
		if err != nil {
			return err
		}
		for lead, err := client.NewElection(s, "report-writer").Campaign(ctx, me); err == nil && lead.Context().Err() == nil && ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequestWithContext(lead.Context(), "PUT", resource, strings.NewReader("report by "+me))
			req.Header = http.Header{"Coordd-Fencing-Name": {"report-writer"}, "Coordd-Fencing-Token": {fmt.Sprint(lead.Token())}}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		s.Close(context.Background())
	}
	return ctx.Err()
}
