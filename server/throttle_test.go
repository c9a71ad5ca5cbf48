package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestThrottle(capacity int) (*throttle, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	t := newThrottle(guessLimit, guessWindow, capacity)
	t.now = clock.now
	return t, clock
}

func TestThrottleAttempts(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration
		client  string
		ok      bool
		want    time.Duration
	}
	fail := func(client string, want time.Duration) step { return step{client: client, want: want} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"five failures are answered, the sixth attempt waits out the window", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", time.Minute),
		}},
		{"a blocked client's right password waits too", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: 10 * time.Second, client: "a", ok: true, want: 50 * time.Second},
		}},
		{"other clients are not slowed", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{client: "b", ok: true}, fail("b", 0), {client: "b", ok: true},
		}},
		{"the block ends with the window, counted from the first failure", []step{
			fail("a", 0), {advance: 30 * time.Second, client: "a"}, fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: 29 * time.Second, client: "a", want: time.Second},
			{advance: time.Second, client: "a", ok: true},
		}},
		{"failures spread wider than the window never block", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: time.Minute, client: "a"}, fail("a", 0), fail("a", 0), fail("a", 0),
		}},
		{"a success does not clear earlier failures", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{client: "a", ok: true}, fail("a", 0), fail("a", time.Minute),
		}},
		{"a client that goes on guessing after the window is blocked again", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: time.Minute, client: "a"}, fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: time.Second, client: "a", want: time.Minute - time.Second},
		}},
		{"attempts while blocked are not counted", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0), fail("a", 0),
			{advance: 59 * time.Second, client: "a", want: time.Second},
			{advance: time.Second, client: "a"}, fail("a", 0),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th, clock := newTestThrottle(guessClients)
			for i, s := range tt.steps {
				clock.advance(s.advance)
				if got := th.attempt(s.client, s.ok); got != s.want {
					t.Fatalf("step %d (%+v): wait %v, want %v", i, s, got, s.want)
				}
			}
		})
	}
}

func TestThrottleBlockReported(t *testing.T) {
	t.Parallel()
	th, clock := newTestThrottle(guessClients)
	var reports []string
	th.onBlock = func(client string, failures int, until time.Time) {
		reports = append(reports, fmt.Sprintf("%s %d %s", client, failures, until.Sub(clock.t)))
	}
	for range 8 {
		th.attempt("203.0.113.9", false)
	}
	if want := []string{"203.0.113.9 5 1m0s"}; fmt.Sprint(reports) != fmt.Sprint(want) {
		t.Errorf("blocks reported %q, want %q: once, when the client becomes blocked", reports, want)
	}
}

// TestThrottleMemoryBounded fails many addresses once each, as a botnet or an IPv6 range would: the
// clients tracked stay at the capacity, and so does the heap.
func TestThrottleMemoryBounded(t *testing.T) {
	// Not parallel: it measures the heap.
	th, _ := newTestThrottle(guessClients)
	var before, full, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	for i := range guessClients {
		th.attempt(addr(i), false)
	}
	runtime.GC()
	runtime.ReadMemStats(&full)
	for i := guessClients; i < 20*guessClients; i++ {
		th.attempt(addr(i), false)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := th.tracked(); n != guessClients {
		t.Errorf("tracking %d clients after %d failed, want the capacity %d", n, 20*guessClients, guessClients)
	}
	perClient := (int64(full.HeapAlloc) - int64(before.HeapAlloc)) / guessClients
	grown := int64(after.HeapAlloc) - int64(full.HeapAlloc)
	t.Logf("%d bytes per client tracked; heap grew %d bytes from %d to %d clients failed", perClient, grown, guessClients, 20*guessClients)
	if perClient > 400 {
		t.Errorf("%d bytes per client tracked, want at most 400 (the README says about 150)", perClient)
	}
	if grown > 1<<20 {
		t.Errorf("heap grew %d bytes while the table was full, want under 1 MiB", grown)
	}
	// The oldest were forgotten, the newest are still blocked-in-waiting.
	if _, ok := th.clients[addr(0)]; ok {
		t.Errorf("the least recently seen client %s is still tracked", addr(0))
	}
	if _, ok := th.clients[addr(20*guessClients-1)]; !ok {
		t.Errorf("the most recently seen client %s is not tracked", addr(20*guessClients-1))
	}
}

func TestThrottleEvictsLeastRecentlySeen(t *testing.T) {
	t.Parallel()
	th, _ := newTestThrottle(2)
	for range guessLimit {
		th.attempt("a", false)
	}
	th.attempt("b", false)
	th.attempt("a", true) // seen again: a is now the most recent
	th.attempt("c", false)
	if _, ok := th.clients["b"]; ok {
		t.Error("b, the least recently seen, is still tracked")
	}
	if wait := th.attempt("a", true); wait <= 0 {
		t.Error("a, blocked and seen recently, was forgotten")
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"10.0.0.1:5555", nil, "10.0.0.1"},
		// What a client writes itself comes before the entry Cloud Run's front end appends.
		{"10.0.0.1:5555", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"10.0.0.1:5555", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"10.0.0.1:5555", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64"},
		{"10.0.0.1:5555", []string{"2001:db8:1:2:ffff::1"}, "2001:db8:1:2::/64"},
		{"10.0.0.1:5555", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"[2001:db8::1]:443", nil, "2001:db8::/64"},
		{"pipe", nil, "pipe"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientKey(r); got != tt.want {
			t.Errorf("clientKey(%s, %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for wait, want := range map[time.Duration]string{
		time.Minute: "60", 59*time.Second + time.Millisecond: "60", time.Millisecond: "1", 0: "1",
	} {
		if got := retryAfter(wait); got != want {
			t.Errorf("retryAfter(%v) = %s, want %s", wait, got, want)
		}
	}
}

// TestGuessingThroughHandler drives the whole request path: 401s, then 429 with Retry-After for the guesser
// only, one WARNING without the password, and the guesser let in again once the window has passed.
func TestGuessingThroughHandler(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "from mlflow")
	}))
	defer upstream.Close()
	var logs bytes.Buffer
	log := newLogger(&logs, newRedactor())
	h := &handler{auth: newBasicAuth("alice", "correct-horse-battery")}
	h.setMLflow(newProxy(strings.TrimPrefix(upstream.URL, "http://"), true, log))
	th, clock := newTestThrottle(guessClients)
	h.guesses = th
	th.onBlock = func(client string, failures int, until time.Time) {
		log.warn("too many failed logins from "+client, "event", "login-throttled", "client", client)
	}

	send := func(from, userpass string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/api/2.0/mlflow/experiments/search", nil)
		r.RemoteAddr = "169.254.1.1:1234"
		r.Header.Set("X-Forwarded-For", "198.51.100.1, "+from) // the forged first entry changes nothing
		if userpass != "" {
			r.Header.Set("Authorization", basic(userpass))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	const guesser, other = "203.0.113.9", "203.0.113.10"
	for i := range guessLimit {
		if rec := send(guesser, fmt.Sprintf("alice:guess-%d", i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong guess %d: %d, want 401", i+1, rec.Code)
		}
	}
	for _, userpass := range []string{"alice:guess-9", "alice:correct-horse-battery"} {
		rec := send(guesser, userpass)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "60" {
			t.Errorf("%s from the guesser after %d failures: %d, Retry-After %q; want 429, 60", userpass, guessLimit, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if rec := send(guesser, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no credentials from the guesser: %d, want 401 (not a guess)", rec.Code)
	}
	if rec := send(other, "alice:correct-horse-battery"); rec.Code != http.StatusOK {
		t.Errorf("right credentials from another client: %d, want 200", rec.Code)
	}
	if rec := send(other, "alice:wrong"); rec.Code != http.StatusUnauthorized {
		t.Errorf("wrong credentials from another client: %d, want 401", rec.Code)
	}
	clock.advance(guessWindow)
	if rec := send(guesser, "alice:correct-horse-battery"); rec.Code != http.StatusOK {
		t.Errorf("right credentials from the guesser after the window: %d, want 200", rec.Code)
	}

	out := logs.String()
	if n := strings.Count(out, `"login-throttled"`); n != 1 {
		t.Errorf("%d login-throttled lines, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `"severity":"WARNING"`) || !strings.Contains(out, guesser) {
		t.Errorf("no WARNING naming %s:\n%s", guesser, out)
	}
	if strings.Contains(out, "guess-") || strings.Contains(out, "correct-horse") {
		t.Errorf("a password reached the log:\n%s", out)
	}
}

// FuzzClientKey checks that whatever a client writes in X-Forwarded-For before the last entry does not
// change the key it is throttled under, and that a key is short (an address or a /64).
func FuzzClientKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, forged, last string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:5555"
		r.Header.Set("X-Forwarded-For", last)
		alone := clientKey(r)
		r.Header.Set("X-Forwarded-For", forged+","+last)
		if got := clientKey(r); got != alone && !strings.Contains(last, ",") {
			t.Fatalf("X-Forwarded-For %q, %q: key %q, but %q alone gives %q", forged, last, got, last, alone)
		}
		if len(alone) > len("ffff:ffff:ffff:ffff::/64") {
			t.Fatalf("key %q for X-Forwarded-For %q is longer than an address", alone, last)
		}
	})
}
