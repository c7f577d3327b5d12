// coordd console: a read-only view of a cluster built only on the public
// HTTP API. No framework, no build step, nothing loaded from elsewhere.
//
// Calls (all GET, with "Authorization: Bearer <token>" when a token is set):
//   /v1/status              of every member, every STATUS_EVERY ms: roles,
//                           terms, indexes, snapshots; the Raft leader is the
//                           one named by the answers of the highest term
//   /v1/elections, /v1/locks, /v1/leases   every DATA_EVERY ms, from the
//                           node the page reads from ("current")
//   /v1/leases/{id}         a few per round, for what each lease carries
//   /v1/elections/{name}, /v1/locks/{name} with Accept: text/event-stream:
//                           Server-Sent Events for up to MAX_STREAMS names
//   /v1/acl/token/self      who the token is
// When the current node stops answering, the page moves to another member
// that answered recently, says so, and reopens its streams there.
'use strict';
(() => {
  const STATUS_EVERY = 500;
  const DATA_EVERY = 1000;
  const TIMEOUT = 1500;
  // Browsers open at most 6 HTTP/1.1 connections per origin; a stream holds
  // one for good, so leave room for the polls.
  const MAX_STREAMS = 3;
  const MAX_LEASES = 200;
  const MAX_ELECTIONS = 200;
  const BIG_LEASE_LIST = 5000; // above this many leases, poll them every 5 s
  const DETAILS_PER_ROUND = 4;
  const FEED_MAX = 200;
  const TOKEN_KEY = 'coordd.token';

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const now = () => performance.now();

  const params = new URLSearchParams(location.search);
  const toBase = (addr) => (addr.includes('://') ? addr : location.protocol + '//' + addr).replace(/\/+$/, '');
  // ?nodes=host:port,host:port names the members as this browser reaches
  // them (ports published by containers, a proxy); otherwise the page uses
  // the members' advertised HTTP addresses.
  const fixedNodes = (params.get('nodes') || '').split(',').map((s) => s.trim()).filter(Boolean).map(toBase);

  const S = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    tokenGen: 0, // bumped when the token changes
    nodes: new Map(), // base URL -> node record
    current: location.origin,
    conn: 'connecting',
    connText: 'connecting…',
    leader: null, // {id, term, at}
    best: null, // the status of the highest term
    acl: null, // null: unknown; false: off; 'required': no valid token; else the token
    needToken: false,
    elections: new Map(), // "election/name" or "lock/name" -> election JSON
    denied: {}, // section -> message of the API's 401/403
    seen: {}, // section -> had a first answer (no "granted" flood at start)
    leases: new Map(), // id -> {id, ttl, ttl_ms, remaining_ms, at, attached, detailAt}
    leaseCount: 0,
    leasesPolledAt: 0,
    dataNote: '',
    dataAt: 0,
    streams: new Map(),
    dataBusy: false,
  };

  class NetError extends Error {}
  // StaleAnswer is thrown for an answer to a request sent with another
  // token than the one in use now: it says nothing about the current token.
  class StaleAnswer extends Error {}

  // call GETs base+path. It resolves with {status, body, headers} for any
  // HTTP answer and throws NetError when the node does not answer.
  async function call(base, path, timeout = TIMEOUT) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeout);
    const headers = {};
    const gen = S.tokenGen;
    if (S.token) headers.Authorization = 'Bearer ' + S.token;
    let r;
    try {
      const res = await fetch(base + path, { headers, signal: ctrl.signal, cache: 'no-store' });
      const text = await res.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch { body = null; }
      r = { status: res.status, body, headers: res.headers };
    } catch (e) {
      r = new NetError(e.name === 'AbortError' ? `no answer within ${timeout} ms` : 'unreachable');
    } finally {
      clearTimeout(timer);
    }
    if (gen !== S.tokenGen) throw new StaleAnswer();
    if (r instanceof NetError) throw r;
    return r;
  }
  const errMsg = (r) => (r.body && r.body.error && r.body.error.message) || `HTTP ${r.status}`;
  // tokenNeeded words a 401: no token, or one the cluster does not know.
  const tokenNeeded = (r) => (S.token ? `the cluster does not accept this token (${errMsg(r)})` : 'this cluster needs an access token: enter one above');

  // ---- members and the Raft leader ----

  function node(base) {
    if (!S.nodes.has(base)) S.nodes.set(base, { base, id: '', status: null, up: null, okAt: 0, err: '', busy: false, healthOnly: 0 });
    return S.nodes.get(base);
  }
  const label = (base) => {
    const n = S.nodes.get(base);
    const host = base.replace(/^https?:\/\//, '');
    return n && n.id ? `${n.id} (${host})` : host;
  };

  function learnMembers(members) {
    if (fixedNodes.length || !Array.isArray(members)) return;
    const bases = new Set(members.filter((m) => m.http_addr).map((m) => toBase(m.http_addr)));
    if (!bases.size) return;
    bases.forEach((b) => node(b));
    for (const b of [...S.nodes.keys()]) {
      if (!bases.has(b) && b !== location.origin && b !== S.current) S.nodes.delete(b);
    }
  }

  async function pollNode(n) {
    if (n.busy) return;
    n.busy = true;
    try {
      // A token refused /v1/status: tell up from down with /healthz, and
      // ask /v1/status again now and then (rules can change).
      const healthOnly = n.healthOnly && now() - n.healthOnly < 10000;
      const r = await call(n.base, healthOnly ? '/healthz' : '/v1/status');
      n.okAt = now();
      n.err = '';
      if (r.status === 200 && !healthOnly) {
        n.status = r.body;
        n.id = r.body.id;
        learnMembers(r.body.members);
        S.denied.cluster = null;
      } else if (r.status === 200) {
        n.id = (r.body && r.body.id) || n.id;
      } else if (r.status === 401 || r.status === 403) {
        // The token may not read cluster status: show that, and tell up
        // from down with the open /healthz instead.
        S.denied.cluster = r.status === 401 ? tokenNeeded(r) : errMsg(r);
        if (r.status === 401) S.needToken = true;
        n.status = null;
        n.healthOnly = now();
      } else {
        n.err = errMsg(r);
      }
      setUp(n, true);
    } catch (e) {
      if (e instanceof StaleAnswer) return;
      n.err = e.message;
      setUp(n, false);
    } finally {
      n.busy = false;
    }
    deriveLeader();
    if (n.base === S.current && n.up === false) connectionLost(n.err);
    else if (S.conn !== 'ok' && S.nodes.get(S.current)?.up === false && n.up) moveTo(n.base);
    renderSummary();
    renderCluster();
    renderBanner();
  }

  function setUp(n, up) {
    if (up) n.everUp = true;
    if (n.up === true && !up) feed('member', `${esc(label(n.base))} does not answer: ${esc(n.err)}`);
    if (n.up === false && up) feed('member', `${esc(label(n.base))} answers again`);
    n.up = up;
  }

  // fresh returns the records that answered within the last round or two.
  const fresh = () => [...S.nodes.values()].filter((n) => n.up && n.status && now() - n.okAt < 2 * STATUS_EVERY + TIMEOUT);

  function deriveLeader() {
    const live = fresh();
    let best = null;
    for (const n of live) if (!best || n.status.term > best.term) best = n.status;
    let leader = null;
    if (best) {
      for (const n of live) {
        const st = n.status;
        if (st.term === best.term && st.leader && (!leader || st.state === 'Leader')) leader = { id: st.leader.id, term: st.term };
      }
    }
    if (live.length) S.best = best;
    if (S.denied.cluster) return;
    const prev = S.leader;
    const prevID = prev ? prev.id : null;
    const id = leader ? leader.id : null;
    if (id !== prevID || (leader && prev && leader.term !== prev.term)) {
      S.leader = leader ? { ...leader, at: Date.now(), first: prev === null && !S.lastLeaderID } : null;
      // The leader before this one, across a gap without any.
      const was = prevID || S.lastLeaderID;
      if (id === was) feed('raft', `Raft leader <b>${esc(id)}</b> again, in term ${leader.term}`);
      else if (id && was) feed('raft', `Raft leader <b>${esc(was)}</b> → <b>${esc(id)}</b> (term ${leader.term})`);
      else if (id) feed('raft', `Raft leader is <b>${esc(id)}</b> (term ${leader.term})`);
      else feed('raft', `No Raft leader (was <b>${esc(prevID)}</b>): an election is under way`);
      if (id) S.lastLeaderID = id;
      render();
    }
  }

  // ---- which node the page reads from ----

  function setConn(state, text) {
    S.conn = state;
    S.connText = text;
    const el = $('conn');
    el.dataset.state = state;
    el.dataset.base = S.current;
    $('conn-text').textContent = text;
    renderBanner();
  }

  function connectionLost(why) {
    if (S.conn === 'reconnecting' && S.lostBase === S.current) return;
    const old = S.current;
    S.lostBase = old;
    feed('conn', `Lost ${esc(label(old))}: ${esc(why)}. Reconnecting to another member…`);
    setConn('reconnecting', `reconnecting (lost ${label(old)})…`);
    const cands = [...S.nodes.values()].filter((n) => n.base !== old && n.up && now() - n.okAt < 3000).sort((a, b) => b.okAt - a.okAt);
    if (cands.length) moveTo(cands[0].base);
  }

  function moveTo(base) {
    if (base === S.current && S.conn === 'ok') return;
    S.current = base;
    setConn('reconnecting', `reconnecting to ${label(base)}…`);
    for (const s of S.streams.values()) s.restart();
    pollData();
  }

  function connected(base) {
    if (base !== S.current || S.conn === 'ok') return;
    const moved = S.lostBase && S.lostBase !== base;
    setConn('ok', `reading from ${label(base)}`);
    if (moved) feed('connok', `Reconnected: reading from ${esc(label(base))} now`);
    S.lostBase = null;
    $('foot-served').textContent = `Data from ${label(base)}.`;
  }

  // ---- elections, locks and leases ----

  async function pollData() {
    if (S.dataBusy) return;
    S.dataBusy = true;
    const base = S.current;
    try {
      const leasesDue = S.leaseCount <= BIG_LEASE_LIST || now() - S.leasesPolledAt > 5000;
      const [el, lk, ls] = await Promise.all([
        call(base, '/v1/elections'), call(base, '/v1/locks'), leasesDue ? call(base, '/v1/leases') : null,
      ]);
      if (base !== S.current) return;
      connected(base);
      S.dataNote = '';
      takeList('election', el);
      takeList('lock', lk);
      if (ls) {
        S.leasesPolledAt = now();
        takeLeases(ls);
      }
      syncStreams();
      render();
      await leaseDetails(base);
    } catch (e) {
      if (e instanceof NetError && base === S.current) {
        const n = node(base);
        n.err = e.message;
        setUp(n, false);
        connectionLost(e.message);
      }
    } finally {
      S.dataBusy = false;
    }
  }

  // denyOrNote records a 401/403 of a section, or a retryable failure.
  function denyOrNote(section, r) {
    if (r.status === 401 || r.status === 403) {
      S.denied[section] = r.status === 401 ? tokenNeeded(r) : errMsg(r);
      if (r.status === 401) S.needToken = true;
      return;
    }
    S.dataNote = `${errMsg(r)} — showing the last answer until the next one succeeds`;
  }

  function takeList(kind, r) {
    if (r.status !== 200) return denyOrNote(kind, r);
    S.denied[kind] = null;
    const names = new Set();
    for (const e of r.body) {
      names.add(e.name);
      takeElection(kind, e, 'poll');
    }
    for (const [key, prev] of S.elections) {
      if (prev.kind !== kind || names.has(prev.name)) continue;
      S.elections.delete(key);
      if (prev.leader) feed('handoff', `${kind} <b>${esc(prev.name)}</b>: lease ${prev.leader.lease} let go; nobody waits`, prev.name);
    }
    S.seen[kind] = true;
  }

  // takeElection merges one answer about a name, from a poll or a stream,
  // and reports holder changes. Changes counts holder changes and only
  // grows, so an answer with fewer is older and ignored; a jump of more
  // than one means changes were coalesced.
  function takeElection(kind, e, via) {
    const key = kind + '/' + e.name;
    const prev = S.elections.get(key);
    // A stream on a name that has gone reports it empty: nothing to add.
    if (!prev && !e.leader && !(e.candidates && e.candidates.length)) return;
    if (prev && e.changes < prev.changes && e.index <= prev.index) return;
    if (prev && e.changes === prev.changes && e.index < prev.index) return;
    S.elections.set(key, { ...e, kind });
    if (!prev) {
      if (S.seen[kind]) {
        const who = e.leader ? `lease ${e.leader.lease} leads, token ${e.token}` : 'no leader yet';
        feed('handoff', `${kind} <b>${esc(e.name)}</b> appeared: ${who}`, e.name);
      }
      return;
    }
    if (e.changes <= prev.changes) return;
    const pl = prev.leader ? prev.leader.lease : 0;
    const nl = e.leader ? e.leader.lease : 0;
    // A hand-off is two changes in one Raft entry (the holder leaves, the
    // next candidate is promoted); anything beyond what the two answers
    // show happened between them unseen.
    const expected = pl && nl && pl !== nl ? 2 : 1;
    const skipped = e.changes - prev.changes - expected;
    const extra = (skipped > 0 ? ` <span class="small">+${skipped} more changes in between</span>` : '') +
      ` <span class="small">via ${via === 'stream' ? 'SSE' : 'poll'}</span>`;
    if (pl && pl === nl) {
      feed('handoff', `${kind} <b>${esc(e.name)}</b>: lease ${nl} still leads, value now <b>${esc(e.leader.value)}</b>${extra}`, e.name);
      return;
    }
    const from = pl ? `lease ${pl}` : 'nobody';
    const to = nl ? `<b>lease ${nl}</b>${e.leader.value ? ` (${esc(e.leader.value)})` : ''}, token <b>${e.token}</b>` : '<b>nobody</b>';
    let why = '';
    if (pl) why = S.leases.has(pl) ? 'resigned' : 'lease ended';
    feed('handoff', `${kind} <b>${esc(e.name)}</b>: ${from} → ${to}` + (why ? ` <span class="small">(${why})</span>` : '') + extra, e.name);
  }

  function takeLeases(r) {
    if (r.status !== 200) return denyOrNote('leases', r);
    S.denied.leases = null;
    const at = now();
    const ids = new Set();
    S.leaseCount = r.body.length;
    for (const l of r.body) {
      ids.add(l.id);
      const prev = S.leases.get(l.id);
      S.leases.set(l.id, { ...l, at, attached: prev ? prev.attached : null, detailAt: prev ? prev.detailAt : 0 });
      if (!prev && S.seen.leases) feed('grant', `lease <b>${l.id}</b> granted (TTL ${esc(l.ttl)})`);
    }
    for (const [id, prev] of S.leases) {
      if (ids.has(id)) continue;
      S.leases.delete(id);
      // The API says only that the lease is gone: one that was due within
      // about a poll expired; one with time left was revoked.
      const left = prev.remaining_ms - (at - prev.at);
      const held = (prev.attached || []).map((a) => `${a.kind} ${esc(a.name)}`).join(', ');
      if (left < DATA_EVERY + 500) feed('expiry', `lease <b>${id}</b> expired${held ? ` — released ${held}` : ''}`);
      else feed('revoke', `lease <b>${id}</b> revoked with ${(left / 1000).toFixed(1)} s left${held ? ` — released ${held}` : ''}`);
    }
    S.seen.leases = true;
  }

  async function leaseDetails(base) {
    const due = shownLeases().sort((a, b) => a.detailAt - b.detailAt).filter((l) => now() - l.detailAt > 2000).slice(0, DETAILS_PER_ROUND);
    await Promise.all(due.map(async (l) => {
      try {
        const r = await call(base, '/v1/leases/' + l.id);
        const cur = S.leases.get(l.id);
        if (cur && r.status === 200) {
          cur.attached = r.body.attached || [];
          cur.detailAt = now();
        }
      } catch { /* the next round tries again */ }
    }));
    renderLeases();
  }

  const shownLeases = () => [...S.leases.values()].sort((a, b) => a.id - b.id).slice(0, MAX_LEASES);
  const leaseLeft = (l) => Math.max(0, l.remaining_ms - (now() - l.at));

  // ---- Server-Sent Events ----

  // syncStreams keeps a stream open on up to MAX_STREAMS names: those with
  // waiting candidates first (a hand-off can happen there), then held ones.
  function syncStreams() {
    const score = (e) => (e.candidates && e.candidates.length ? 2 : 0) + (e.leader ? 1 : 0);
    const keys = [...S.elections.keys()];
    const keep = keys.filter((k) => S.streams.has(k));
    const rest = keys.filter((k) => !S.streams.has(k)).sort((a, b) => score(S.elections.get(b)) - score(S.elections.get(a)) || a.localeCompare(b));
    const want = new Set([...keep, ...rest].slice(0, MAX_STREAMS));
    for (const [k, s] of S.streams) if (!want.has(k)) { s.stop(); S.streams.delete(k); }
    for (const k of want) if (!S.streams.has(k)) startStream(k);
  }

  function startStream(key) {
    const e = S.elections.get(key);
    const kind = e.kind;
    const path = `/v1/${kind === 'lock' ? 'locks' : 'elections'}/${encodeURIComponent(e.name)}`;
    const s = { key, live: false, stopped: false, ctrl: null, backoff: 200, wake: null };
    // restart drops the connection and reconnects at once (another node,
    // another token).
    s.restart = () => { s.backoff = 0; if (s.ctrl) s.ctrl.abort(); if (s.wake) s.wake(); };
    s.stop = () => { s.stopped = true; s.restart(); };
    S.streams.set(key, s);
    (async () => {
      while (!s.stopped) {
        const base = S.current;
        s.ctrl = new AbortController();
        const headers = { Accept: 'text/event-stream' };
        if (S.token) headers.Authorization = 'Bearer ' + S.token;
        try {
          const res = await fetch(base + path, { headers, signal: s.ctrl.signal, cache: 'no-store' });
          if (res.status === 200) {
            s.live = true;
            s.base = base;
            s.backoff = 200;
            connected(base);
            await readEvents(res.body, (ev, data) => {
              if (ev === 'election') {
                takeElection(kind, JSON.parse(data), 'stream');
                render();
              }
            });
          } else {
            if (res.body) res.body.cancel();
            s.backoff = 2000;
          }
        } catch { /* aborted, or the node went away */ }
        if (s.live) { s.live = false; renderElections(); }
        if (s.stopped) return;
        await new Promise((r) => { s.wake = r; setTimeout(r, s.backoff); });
        s.wake = null;
        s.backoff = Math.min(Math.max(s.backoff * 2, 200), 2000);
      }
    })();
  }

  // readEvents parses a text/event-stream body and calls onEvent(event,
  // data) for each event.
  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let ev = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const f = c < 0 ? line : line.slice(0, c);
          const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
          if (f === 'event') ev = v;
          else if (f === 'data') data.push(v);
        }
        if (data.length) onEvent(ev, data.join('\n'));
      }
    }
  }

  // ---- access tokens ----

  async function whoami() {
    try {
      const r = await call(S.current, '/v1/acl/token/self');
      if (r.status === 200) { S.acl = r.body; S.needToken = false; }
      else if (r.status === 400) S.acl = false; // ACLs off
      else if (r.status === 401) { S.acl = 'required'; S.needToken = true; }
    } catch { /* retried on the next token change or reload */ }
    renderToken();
  }

  function renderToken() {
    const who = $('token-who');
    const form = $('token-form');
    form.hidden = S.acl === false && !S.token;
    if (S.acl && typeof S.acl === 'object') {
      who.textContent = `token ${S.acl.accessor_id.slice(0, 8)}…${S.acl.description ? ' · ' + S.acl.description : ''}${S.acl.management ? ' · management' : ''}`;
    } else if (S.acl === 'required') {
      who.textContent = S.token ? 'token not accepted' : 'ACLs on: token needed';
    } else who.textContent = '';
  }

  function useToken(tok) {
    S.token = tok;
    if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
    else sessionStorage.removeItem(TOKEN_KEY);
    S.denied = {};
    S.needToken = false;
    S.tokenGen++;
    for (const n of S.nodes.values()) n.healthOnly = 0;
    for (const s of S.streams.values()) s.restart();
    whoami();
    pollData();
  }

  // ---- rendering ----

  function feed(kind, html, name) {
    const t = new Date();
    const li = document.createElement('li');
    li.className = 'fresh';
    li.dataset.kind = kind;
    if (name) li.dataset.name = name;
    const names = { raft: 'raft', handoff: 'hand-off', expiry: 'expiry', revoke: 'revoke', grant: 'lease', conn: 'connection', connok: 'connection', member: 'member' };
    li.innerHTML = `<span class="t">${t.toLocaleTimeString([], { hour12: false })}.${String(t.getMilliseconds()).padStart(3, '0')}</span>` +
      `<span><span class="k ${kind}">${names[kind] || kind}</span>${html}</span>`;
    const ol = $('feed');
    ol.prepend(li);
    while (ol.children.length > FEED_MAX) ol.lastChild.remove();
  }

  const fmtAge = (s) => {
    if (s < 0 || s == null || Number.isNaN(s)) return '—';
    if (s < 60) return `${Math.round(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
  };
  const fmtBytes = (b) => (b < 1024 ? `${b} B` : b < 1 << 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / (1 << 20)).toFixed(1)} MiB`);
  const heldFor = (iso) => (iso ? fmtAge((Date.now() - Date.parse(iso)) / 1000) : '');
  const denied = (section) => (S.denied[section] ? `<div class="denied"><b>Hidden:</b> ${esc(S.denied[section])}</div>` : '');

  const cache = {};
  function put(id, html) {
    if (cache[id] === html) return false;
    cache[id] = html;
    $(id).innerHTML = html;
    return true;
  }

  function render() {
    renderSummary();
    renderCluster();
    renderElections();
    renderLeases();
    renderBanner();
  }

  function renderSummary() {
    if (S.conn === 'ok') $('conn-text').textContent = `reading from ${label(S.current)}`;
    const l = $('leader');
    const best = S.best;
    if (S.denied.cluster) {
      l.textContent = 'hidden';
      l.className = 'value hidden-val';
      $('leader-sub').textContent = 'token may not read status';
    } else if (S.leader) {
      l.textContent = S.leader.id;
      l.className = 'value';
      $('leader-sub').textContent = S.leader.first ? 'leading when the page opened' : `leads since ${new Date(S.leader.at).toLocaleTimeString([], { hour12: false })}`;
    } else {
      l.textContent = S.best ? 'none' : '—';
      l.className = 'value none';
      $('leader-sub').textContent = S.best ? 'election under way' : '';
    }
    l.dataset.leader = S.leader ? S.leader.id : '';
    l.dataset.at = S.leader ? String(S.leader.at) : '';
    $('term').textContent = best ? best.term : '—';
    $('commit').textContent = best ? best.commit_index : '—';
    $('commit-sub').textContent = best ? `applied ${best.applied_index}` : '';
    const rows = memberRows();
    const up = rows.filter((m) => m.n && m.n.up).length;
    $('members-count').textContent = S.denied.cluster ? 'hidden' : rows.length ? `${up}/${rows.length}` : '—';
    $('members-sub').textContent = S.denied.cluster ? '' : rows.length ? (up === rows.length ? 'all answer' : `${rows.length - up} not answering`) : '';
    const els = [...S.elections.values()];
    $('elections-count').textContent = S.denied.election && S.denied.lock ? 'hidden' : `${els.filter((e) => e.kind === 'election').length} · ${els.filter((e) => e.kind === 'lock').length}`;
    $('elections-sub').textContent = S.denied.election && S.denied.lock ? '' : `${els.filter((e) => !e.leader).length} without a holder`;
    $('leases-count').textContent = S.denied.leases ? 'hidden' : S.leaseCount;
    $('leases-sub').textContent = S.leaseCount > MAX_LEASES ? `first ${MAX_LEASES} shown` : '';
    if (best && best.cluster_id) $('cluster-id').textContent = 'cluster ' + best.cluster_id;
  }

  // memberRows joins the configuration (from the freshest status) with the
  // answers of each member's own /v1/status.
  function memberRows() {
    const byID = new Map();
    for (const n of S.nodes.values()) {
      if (!n.id) continue;
      const cur = byID.get(n.id);
      if (!cur || n.okAt > cur.okAt) byID.set(n.id, n);
    }
    const conf = S.best ? S.best.members || [] : [];
    const rows = conf.map((m) => ({ m, n: byID.get(m.id) || S.nodes.get(m.http_addr ? toBase(m.http_addr) : '') }));
    if (!rows.length) for (const n of S.nodes.values()) rows.push({ m: { id: n.id || label(n.base), http_addr: n.base.replace(/^https?:\/\//, ''), voter: true }, n });
    return rows;
  }

  function renderCluster() {
    if (S.denied.cluster) return put('cluster', denied('cluster'));
    const rows = memberRows();
    if (!rows.length) return put('cluster', '<div class="empty">waiting for the first answer…</div>');
    const best = S.best;
    let html = '<table><thead><tr><th>Member</th><th>Role</th><th class="num">Term</th><th class="num">Commit</th><th class="num">Applied</th><th class="num">Behind</th><th>Last contact</th><th>Latest snapshot</th><th>Ready</th></tr></thead><tbody>';
    for (const { m, n } of rows) {
      const st = n && n.up ? n.status : null;
      const isLeader = S.leader && S.leader.id === m.id;
      const cls = isLeader ? 'is-leader' : !st ? 'is-down' : '';
      let role;
      if (!n || !n.up) role = '<span class="pill down">unreachable</span>';
      else if (!st) role = '<span class="pill follower">answers</span>';
      else role = `<span class="pill ${st.state === 'Leader' ? 'leader' : st.state === 'Candidate' ? 'candidate' : 'follower'}">${esc(st.state.toLowerCase())}</span>`;
      if (!m.voter) role += ' <span class="pill nonvoter">non-voter</span>';
      if (st && st.integrity && st.integrity.shadow) role += ' <span class="pill nonvoter">shadow</span>';
      const alarm = alarmsNow().find((a) => a.member === m.id);
      if (alarm) role += ` <span class="pill no" data-alarm="${esc(m.id)}" title="its state digest at index ${alarm.index} differs from the majority's">state differs</span>`;
      if (st && st.integrity && st.integrity.refusing) role += ' <span class="pill down">refusing</span>';
      const behind = st && best ? Math.max(0, best.commit_index - st.applied_index) : null;
      const snap = st && st.snapshot ? `#${st.snapshot.index} · ${fmtAge(st.snapshot.age_seconds)} ago · ${fmtBytes(st.snapshot.size_bytes)}` : st ? 'none yet' : '—';
      const contact = st ? (st.state === 'Leader' ? 'leads' : esc(st.last_contact || '—')) : `<span class="small">${esc((n && n.err) || 'no answer yet')}</span>`;
      html += `<tr class="${cls}" data-member="${esc(m.id)}"><td><div class="name">${esc(m.id)}</div><div class="addr">${esc(m.http_addr || '')}</div></td>` +
        `<td>${role}</td><td class="num">${st ? st.term : '—'}</td><td class="num">${st ? st.commit_index : '—'}</td>` +
        `<td class="num">${st ? st.applied_index : '—'}</td><td class="num">${behind == null ? '—' : behind}</td>` +
        `<td>${contact}</td><td class="small">${snap}</td>` +
        `<td>${st ? (st.ready ? '<span class="pill ok">ready</span>' : '<span class="pill no">not ready</span>') : '—'}</td></tr>`;
    }
    html += '</tbody></table>';
    // Members that the browser cannot reach while the cluster itself is
    // healthy: their advertised addresses are private (containers, NAT).
    const cur = S.nodes.get(S.current);
    // (A member that answered before and stopped is down, not private.)
    const unreachable = rows.filter(({ n }) => !n || (n.up === false && !n.everUp));
    if (!fixedNodes.length && unreachable.length && cur && cur.status && cur.status.ready) {
      html += `<div class="note">Not answering this browser: ${unreachable.map(({ m }) => esc(m.http_addr || m.id)).join(', ')}. ` +
        `If ${esc(label(S.current))} says the cluster is healthy, those advertised addresses may be private (containers, NAT): ` +
        'open the console with <span class="mono">?nodes=host:port,host:port,…</span> listing the addresses this browser reaches, so that it can also move to them if this node fails.</div>';
    }
    put('cluster', html);
  }

  function renderElections() {
    const all = [...S.elections.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
    const els = all.slice(0, MAX_ELECTIONS);
    let html = denied('election') + (S.denied.lock !== S.denied.election ? denied('lock') : '');
    if (!els.length) {
      if (!S.denied.election || !S.denied.lock) html += '<div class="empty">No election or lock has a holder or a candidate.</div>';
      return put('elections', html);
    }
    html += '<table><thead><tr><th>Name</th><th>Holder</th><th>Fencing token</th><th>Held for</th><th>Waiting candidates</th><th class="num">Changes</th></tr></thead><tbody>';
    for (const e of els) {
      const key = e.kind + '/' + e.name;
      const live = S.streams.get(key);
      const holders = e.limit > 1 && e.holders ? e.holders : e.leader ? [e.leader] : [];
      const holder = holders.length
        ? holders.map((h) => `<div class="holder"><span class="lease">lease ${h.lease}</span>${h.value ? `<span class="value-text">${esc(h.value)}</span>` : ''}</div>`).join('')
        : `<span class="noholder">no leader</span>${e.delay_until ? `<div class="small">lock-delay until ${esc(new Date(e.delay_until).toLocaleTimeString([], { hour12: false }))}</div>` : ''}`;
      // Each holder of a semaphore has its own token; e.token is the leader's.
      const tokens = holders.length > 1
        ? holders.map((h) => `<div><span class="token-badge"${h.lease === e.leader.lease ? ` data-token="${h.token}"` : ''}>${h.token}</span></div>`).join('')
        : e.token ? `<span class="token-badge" data-token="${e.token}">${e.token}</span>` : '—';
      const queue = e.candidates && e.candidates.length
        ? `<div class="queue">${e.candidates.map((c) => `<span class="cand">#${c.position} lease ${c.lease}${c.value ? ' · ' + esc(c.value) : ''}</span>`).join('')}</div>`
        : '<span class="small">none</span>';
      html += `<tr data-election="${esc(e.name)}" data-kind="${e.kind}"><td><div class="name">${esc(e.name)}${live && live.live ? `<span class="live-tag" data-via="${esc(live.base)}" title="Server-Sent Events stream open on ${esc(label(live.base))}">● live</span>` : ''}</div>` +
        `<span class="pill kind">${e.kind}${e.limit > 1 ? ` · ${e.limit} holders` : ''}</span></td>` +
        `<td>${holder}</td><td class="tokens">${tokens}</td>` +
        `<td class="small">${e.leader ? heldFor(e.leader.since) : ''}</td><td>${queue}</td><td class="num">${e.changes}</td></tr>`;
    }
    html += '</tbody></table>';
    if (all.length > els.length) html += `<div class="note">The first ${els.length} of ${all.length} names are shown.</div>`;
    put('elections', html);
  }

  // heldBy lists what the elections and locks say a lease holds or waits for.
  function heldBy(id) {
    const out = [];
    for (const e of S.elections.values()) {
      if ((e.holders || (e.leader ? [e.leader] : [])).some((h) => h.lease === id)) out.push(`<span class="chip ${e.kind}">holds ${e.kind === 'lock' ? 'lock' : 'election'} ${esc(e.name)}</span>`);
      else if ((e.candidates || []).some((c) => c.lease === id)) out.push(`<span class="chip">waits #${e.candidates.find((c) => c.lease === id).position} for ${esc(e.name)}</span>`);
    }
    return out;
  }

  function renderLeases() {
    if (S.denied.leases) return put('leases', denied('leases'));
    const ls = shownLeases();
    if (!ls.length) return put('leases', '<div class="empty">No leases.</div>');
    let html = '<table><thead><tr><th>Lease</th><th>TTL</th><th>Remaining</th><th>Attached</th></tr></thead><tbody>';
    for (const l of ls) {
      const chips = heldBy(l.id);
      for (const a of l.attached || []) if (a.kind === 'key') chips.push(`<span class="chip key">key ${esc(a.name)}</span>`);
      html += `<tr data-lease="${l.id}"><td class="mono name">${l.id}</td><td class="mono">${esc(l.ttl)}</td>` +
        `<td><div class="remaining"><span class="secs"></span><span class="bar"><span></span></span></div></td>` +
        `<td><div class="chips">${chips.join('') || '<span class="small">nothing</span>'}</div></td></tr>`;
    }
    put('leases', html + '</tbody></table>');
    tickLeases();
  }

  // tickLeases counts every shown lease down between polls.
  function tickLeases() {
    for (const tr of document.querySelectorAll('#leases tr[data-lease]')) {
      const l = S.leases.get(Number(tr.dataset.lease));
      if (!l) continue;
      const left = leaseLeft(l);
      tr.querySelector('.secs').textContent = (left / 1000).toFixed(1) + ' s';
      tr.dataset.remaining = String(Math.round(left));
      const frac = l.ttl_ms ? Math.min(1, left / l.ttl_ms) : 0;
      const bar = tr.querySelector('.bar');
      bar.firstChild.style.width = (frac * 100).toFixed(1) + '%';
      bar.className = 'bar' + (frac < 0.15 ? ' crit' : frac < 0.4 ? ' low' : '');
    }
  }

  // alarmsNow are the cluster's alarms (replicated: any fresh status has
  // them all).
  function alarmsNow() {
    for (const n of fresh()) if (n.status && n.status.alarms) return n.status.alarms;
    return [];
  }

  function renderBanner() {
    const b = $('banner');
    let kind = 'warn';
    let text = '';
    const alarms = alarmsNow();
    if (alarms.length) {
      const a = alarms[0];
      text = `State digest mismatch: the state of ${alarms.map((x) => x.member).join(', ')} differs from the other members' ` +
        `(index ${a.index}: digest ${a.digest.slice(0, 12)}…, the majority has ${a.expected.slice(0, 12)}…). ` +
        `Replace that member's data, then run coordctl alarm disarm ${a.member}. See coordctl alarm list.`;
      kind = 'bad';
    } else if (S.conn === 'reconnecting') text = `Connection lost — ${S.connText} The page keeps the last data it had until another member answers.`;
    else if (S.needToken && !S.token) { text = 'This cluster has access control on: paste an access token above to see what it may read. The token stays in this tab only (session storage).'; kind = 'info'; }
    else if (S.needToken) { text = 'The cluster did not accept this token: check it, or clear it.'; kind = 'bad'; }
    else if (S.best && !S.leader && !S.denied.cluster) { text = 'No Raft leader: the members are electing one. Writes wait; reads of the last state follow.'; kind = 'bad'; }
    else if (S.dataNote) text = `The last read failed: ${S.dataNote}.`;
    b.hidden = !text;
    b.dataset.kind = kind;
    b.textContent = text;
  }

  // ---- start ----

  function loop(fn, every) {
    const run = async () => {
      const t = now();
      try { await fn(); } catch (e) { console.error(e); }
      setTimeout(run, Math.max(0, every - (now() - t)));
    };
    run();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token-input').value.trim();
    $('token-input').value = '';
    useToken(v);
  });
  $('token-clear').addEventListener('click', () => { $('token-input').value = ''; useToken(''); });

  for (const b of fixedNodes) node(b);
  node(location.origin);
  feed('connok', `Console opened on ${esc(location.host)}`);
  whoami();
  // Each member is polled on its own: one that hangs does not delay the
  // others (pollNode skips a member whose last poll is still running).
  loop(() => { for (const n of S.nodes.values()) pollNode(n); }, STATUS_EVERY);
  loop(pollData, DATA_EVERY);
  setInterval(tickLeases, 100);
  setInterval(() => renderSummary(), 1000);
})();
