package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/client"
)

const aclSynopsis = `  coordctl acl bootstrap [-secret-file F] [-description D]
                                         make the first management token (once per cluster)
  coordctl acl token create [-description D] [-management] [-rule RESOURCE:ACCESS[:PREFIX]]...
                                         RESOURCE kv|lease|election|lock|operator|acl,
                                         ACCESS read|write|deny; e.g. -rule kv:write:app/
  coordctl acl token ls
  coordctl acl token get ACCESSOR
  coordctl acl token delete ACCESSOR
  coordctl acl whoami                    the token this client sends (-token, $COORDD_TOKEN)
`

// ruleFlags collects repeated -rule flags.
type ruleFlags []client.ACLRule

func (r *ruleFlags) String() string { return fmt.Sprint(*r) }

// Set parses RESOURCE:ACCESS[:PREFIX]; the prefix may contain colons.
func (r *ruleFlags) Set(s string) error {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("rule %q: want RESOURCE:ACCESS[:PREFIX], e.g. kv:write:app/", s)
	}
	access, err := acl.ParseAccess(parts[1])
	if err != nil {
		return fmt.Errorf("rule %q: %w", s, err)
	}
	rule := client.ACLRule{Resource: acl.Resource(parts[0]), Access: access}
	if len(parts) == 3 {
		rule.Prefix = parts[2]
	}
	*r = append(*r, rule)
	return nil
}

func tokenRow(t *client.ACLToken) []string {
	var rules []string
	for _, r := range t.Rules {
		rules = append(rules, string(r.Resource)+":"+r.Access.String()+":"+r.Prefix)
	}
	if t.Management {
		rules = []string{"management"}
	}
	return []string{t.AccessorID, t.Description, strings.Join(rules, " "), u64(t.CreateIndex)}
}

var tokenHeader = []string{"ACCESSOR", "DESCRIPTION", "RULES", "CREATED"}

// showCreated prints a new token with its secret: the only time it is shown.
func (e *env) showCreated(t *client.ACLToken) {
	if e.json {
		e.printJSON(t)
		return
	}
	e.printTable([]string{"ACCESSOR", "SECRET"}, [][]string{{t.AccessorID, t.SecretID}})
}

func cmdACLBootstrap(e *env, args []string) int {
	fs := e.newFlags("acl bootstrap [-secret-file F] [-description D]")
	secretFile := fs.String("secret-file", "", "write the new management secret to this file (0600) instead of printing it")
	desc := fs.String("description", "bootstrap management token", "description of the token")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		t, err := c.ACLBootstrap(ctx, *desc, "")
		if t != nil && t.SecretID != "" && *secretFile != "" {
			// Written even when the outcome is unknown: the secret may
			// have been made.
			if werr := writeSecret(*secretFile, t.SecretID); werr != nil {
				return e.fail(werr)
			}
		}
		if err != nil {
			if t != nil && t.SecretID != "" && *secretFile == "" {
				e.warnf("the outcome is unknown; if the bootstrap happened, its secret is %s", t.SecretID)
			}
			return e.fail(err)
		}
		if *secretFile != "" {
			t.SecretID = "(written to " + *secretFile + ")"
		}
		e.showCreated(t)
		return exitOK
	})
}

func cmdACLTokenCreate(e *env, args []string) int {
	fs := e.newFlags("acl token create [-description D] [-management] [-rule RESOURCE:ACCESS[:PREFIX]]...")
	desc := fs.String("description", "", "description of the token")
	mgmt := fs.Bool("management", false, "a management token: may do everything")
	var rules ruleFlags
	fs.Var(&rules, "rule", "RESOURCE:ACCESS[:PREFIX] (repeat for more rules)")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	if !*mgmt && len(rules) == 0 {
		return e.usagef("give -management or at least one -rule (a token without rules may do nothing)")
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		t, err := c.ACLCreateToken(ctx, client.ACLTokenSpec{Description: *desc, Management: *mgmt, Rules: rules})
		if err != nil {
			if t != nil && t.SecretID != "" {
				e.warnf("the outcome is unknown; if the token was made, its secret is %s", t.SecretID)
			}
			return e.fail(err)
		}
		e.showCreated(t)
		return exitOK
	})
}

func cmdACLTokenList(e *env, args []string) int {
	fs := e.newFlags("acl token ls")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		ts, err := c.ACLTokens(ctx)
		if err != nil {
			return e.fail(err)
		}
		e.show(ts, tokenHeader, func() [][]string {
			rows := make([][]string, 0, len(ts))
			for i := range ts {
				rows = append(rows, tokenRow(&ts[i]))
			}
			return rows
		})
		return exitOK
	})
}

func cmdACLTokenGet(e *env, args []string) int {
	fs := e.newFlags("acl token get ACCESSOR")
	pos, err := e.parseArgs(fs, args, 1, 1, "ACCESSOR")
	if err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		t, err := c.ACLToken(ctx, pos[0])
		if err != nil {
			return e.fail(err)
		}
		e.show(t, tokenHeader, func() [][]string { return [][]string{tokenRow(t)} })
		return exitOK
	})
}

func cmdACLTokenDelete(e *env, args []string) int {
	fs := e.newFlags("acl token delete ACCESSOR")
	pos, err := e.parseArgs(fs, args, 1, 1, "ACCESSOR")
	if err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		if err := c.ACLDeleteToken(ctx, pos[0]); err != nil {
			return e.fail(err)
		}
		e.printLine("deleted %s", pos[0])
		return exitOK
	})
}

func cmdACLWhoami(e *env, args []string) int {
	fs := e.newFlags("acl whoami")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		t, err := c.ACLSelf(ctx)
		if err != nil {
			return e.fail(err)
		}
		e.show(t, tokenHeader, func() [][]string { return [][]string{tokenRow(t)} })
		return exitOK
	})
}

// writeSecret writes a secret to a new file only its owner can read.
func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("secret file: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("secret file %s: %w", path, err)
	}
	return f.Close()
}
