package main

import (
	"container/list"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Failed-login throttling: each client may get the password wrong guessLimit times in guessWindow; after
// that every attempt from it that carries credentials gets 429 until the window, counted from its first
// failure, has passed. That is at most 5 guesses a minute per client and per instance, 7,200 a day, which
// against a password of 12 or more characters (see minPasswordLength) buys an attacker nothing.
const (
	guessLimit  = 5
	guessWindow = time.Minute
	// guessClients bounds the memory for the clients tracked: about 150 bytes each (measured by TestThrottleMemoryBounded), so about 1.5 MiB in all.
	// Past it, the client seen least recently is forgotten.
	guessClients = 10000
)

// throttle counts failed logins per client in a fixed-size LRU. A client is blocked once it has failed
// limit times inside window, until window after its first failure. A blocked client is refused whatever
// it sends, the right password included: if a correct guess got through, an attacker would go on
// guessing at full speed and simply stop at the first answer that is not 429. A successful login neither
// counts nor clears earlier failures, so that a legitimate client behind the same address as an attacker
// cannot reset the attacker's count.
type throttle struct {
	limit    int
	window   time.Duration
	capacity int
	now      func() time.Time
	// onBlock is called, outside the lock, when a client becomes blocked.
	onBlock func(client string, failures int, until time.Time)

	mu      sync.Mutex
	clients map[string]*list.Element // of *guesses
	lru     *list.List               // most recently seen first
}

type guesses struct {
	client   string
	first    time.Time // of the failures counted now
	failures int
}

func newThrottle(limit int, window time.Duration, capacity int) *throttle {
	return &throttle{
		limit: limit, window: window, capacity: capacity, now: time.Now,
		clients: make(map[string]*list.Element), lru: list.New(),
	}
}

// attempt records the outcome of a login by client and returns how long the client must wait, or 0 when
// the outcome may be acted on. A blocked client's attempt is not counted: it was not judged.
func (t *throttle) attempt(client string, ok bool) (wait time.Duration) {
	now := t.now()
	var blocked *guesses
	defer func() {
		if blocked != nil && t.onBlock != nil {
			t.onBlock(blocked.client, blocked.failures, blocked.first.Add(t.window))
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.clients[client]
	var g *guesses
	if e != nil {
		g = e.Value.(*guesses)
		t.lru.MoveToFront(e)
		if now.Sub(g.first) >= t.window {
			g.failures = 0
		}
		if g.failures >= t.limit {
			return g.first.Add(t.window).Sub(now)
		}
	}
	if ok {
		return 0
	}
	if g == nil {
		g = &guesses{client: client}
		t.clients[client] = t.lru.PushFront(g)
		for t.lru.Len() > t.capacity {
			old := t.lru.Remove(t.lru.Back()).(*guesses)
			delete(t.clients, old.client)
		}
	}
	if g.failures == 0 {
		g.first = now
	}
	g.failures++
	if g.failures == t.limit {
		copied := *g
		blocked = &copied
	}
	return 0
}

// tracked is the number of clients in memory.
func (t *throttle) tracked() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
}

// clientKey names the client for throttling: its address as remoteIP reads it (the last X-Forwarded-For
// entry, which Cloud Run's front end appends and a client cannot forge), and for IPv6 the /64 it is in,
// since one subscriber commonly holds a whole /64 and could otherwise take a fresh address per guess.
func clientKey(r *http.Request) string {
	ip := remoteIP(r)
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		// remoteIP falls back to the connection's own peer, which the client does not choose.
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}

// retryAfter is the Retry-After value for a wait: whole seconds, rounded up, at least 1.
func retryAfter(wait time.Duration) string {
	s := int64((wait + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// tooManyGuesses answers a blocked client.
func tooManyGuesses(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", retryAfter(wait))
	http.Error(w, "Too Many Requests: too many failed logins from your address; wait as Retry-After says, then retry with the right credentials.", http.StatusTooManyRequests)
}
