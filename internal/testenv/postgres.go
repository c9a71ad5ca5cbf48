package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a PostgreSQL server of its own, on 127.0.0.1, with superuser "postgres" and a random password
// (so that tests see a real secret in the URL, as in production).
type Postgres struct {
	proc     *process
	port     int
	password string
	dataDir  string
	log      string
}

// StartPostgres initialises a cluster in dir/pgdata and runs postgres on a free port until Stop. When the
// caller is root, postgres (which refuses to run as root) runs as the "postgres" OS user, and dir's
// ancestors get search permission for that user.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "pgdata")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var asUser []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgres: running as root needs the postgres OS user that Debian's postgresql package creates (run make setup, which runs internal/testenv/setup.sh): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dataDir, uid, gid); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if err := allowSearch(dir); err != nil {
			return nil, fmt.Errorf("postgres: let the postgres user reach %s: %w", dir, err)
		}
		// setpriv execs postgres in place (runuser would fork and stand between us and postgres), and
		// sets the parent-death signal after changing user, which the kernel would otherwise clear.
		asUser = []string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=KILL", "--"}
	}
	command := func(name string, args ...string) *exec.Cmd {
		argv := append(append(append([]string{}, asUser...), filepath.Join(bin, name)), args...)
		return exec.Command(argv[0], argv[1:]...)
	}

	password := randomHex(12)
	pwfile := filepath.Join(dataDir, "..", "pgpass-init")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer os.Remove(pwfile)
	initdb := command("initdb", "-D", dataDir, "-U", "postgres", "--auth=scram-sha-256", "--pwfile="+pwfile, "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postgres: initdb in %s: %w\n%s", dataDir, err, out)
	}

	logPath := filepath.Join(dir, "postgres.log")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		// No unix socket: the tests connect over TCP, and socket paths under deep temp dirs can exceed
		// the 107-byte limit. fsync off: the data is thrown away.
		cmd := command("postgres", "-D", dataDir, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		proc, err := startProcess(cmd)
		logFile.Close()
		if err != nil {
			return nil, fmt.Errorf("postgres: start %s: %w", cmd.Path, err)
		}
		p := &Postgres{proc: proc, port: port, password: password, dataDir: dataDir, log: logPath}
		if err := p.waitReady(ctx); err != nil {
			p.Stop()
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return p, nil
	}
	return nil, lastErr
}

func (p *Postgres) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if p.proc.exited() {
			return fmt.Errorf("postgres exited during start (%v); its log %s says:\n%s", p.proc.err, p.log, readTail(p.log))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres on %s did not accept connections: %w (last error: %v); its log %s says:\n%s", p.Addr(), ctx.Err(), err, p.log, readTail(p.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Addr returns host:port.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Password returns the superuser's password.
func (p *Postgres) Password() string { return p.password }

// URL returns a postgresql:// URL for database db as superuser postgres, in the form both SQLAlchemy (MLflow)
// and pgx accept.
func (p *Postgres) URL(db string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword("postgres", p.password), Host: p.Addr(), Path: "/" + db}
	return u.String()
}

// CreateDatabase creates an empty database.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("postgres: create database %q: %w", name, err)
	}
	return nil
}

// DropDatabase drops a database, closing any session still connected to it (a server under test that was
// killed may have left one).
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("postgres: drop database %q: %w", name, err)
	}
	return nil
}

// Stop shuts postgres down (fast shutdown, then kill).
func (p *Postgres) Stop() error {
	p.proc.stop(syscall.SIGINT, 10*time.Second)
	return nil
}

func postgresBinDir() (string, error) {
	if path, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			path = resolved
		}
		return filepath.Dir(path), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("postgres: initdb is neither on PATH nor in /usr/lib/postgresql/*/bin: run make setup (internal/testenv/setup.sh installs Debian's postgresql)")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// allowSearch adds search (x) permission for others on dir and each ancestor that lacks it, so that
// another user can reach a directory below it. It grants no listing or reading.
func allowSearch(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, info.Mode().Perm()|0o001); err != nil && !errors.Is(err, fs.ErrPermission) {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}
