/*
 * The in-sandbox agent: PID 1 of every session sandbox, which forks every command; and,
 * as `agent exec`, the command of a one-shot sandbox.
 *
 * A port of agent.py, whose docstring explains the protocol and the reason for each
 * rule; the functions here keep its names. Why C: a static binary needs nothing from the
 * sandbox's image (no interpreter, no libc, no shell), so busybox-only and distroless
 * images work; and it starts in a fraction of an interpreter's CPU time and idles in a
 * fraction of its memory, which every session pays. agent.py remains the fallback for
 * servers without a C compiler (see agent_build.py).
 *
 * Protocol: one JSON object per SOCK_SEQPACKET packet on fd 0 (the server's channel).
 *   server -> agent: {"op":"spawn","id","argv","env","cwd","stdin"} + 2 or 3 fds
 *                    {"op":"spawn",...,"tty":true,"cols","rows","echo"} + no fds
 *                    {"op":"kill","pid","signal"}
 *   agent -> server: {"op":"ready","pid"}
 *                    {"op":"started","id","pid"} or {"op":"failed","id","error","reason"}
 *                    (a tty spawn's "started" carries the terminal's master fd)
 *                    {"op":"exit","id","pid","code","signal"}
 * Nothing the server sends can end the agent: a packet it cannot read is dropped (its
 * fds closed); a spawn with a readable id but unusable fields is answered "failed".
 * Strings no execve can carry are refused before anything is forked: a NUL (\u0000) or
 * text that is not Unicode (a lone surrogate escape such as \ud800, bytes that are not
 * UTF-8) in argv or env fail the spawn (spawn_failed); in cwd they make it invalid_cwd,
 * as no such directory can exist.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SOCK 0 /* the server's channel is our stdin */
#define MAX_PACKET (8 * 1024 * 1024)
#define KILL_ROUNDS 200
#define START_TIMEOUT_MS 10000
#define FORK_PATIENCE_MS 2000
#define MAX_DEPTH 64 /* JSON nesting we skip over; deeper is malformed (bounded stack) */

/* ---- small helpers ------------------------------------------------------------------ */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		_exit(70); /* out of memory: as PID 1, the sandbox ends and the server says so */
	return p;
}

static void write_str(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t k = write(fd, s, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;
		s += k;
		n -= (size_t)k;
	}
}

/* Close fds from..to (close_range where the kernel has it). */
static void close_fds(unsigned int from, unsigned int to)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, from, to, 0) == 0)
		return;
#endif
	for (; from <= to && from < 65536; from++)
		close((int)from);
}

/* Close every fd but a and b. */
static void keep_only(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;
	if (lo > 0)
		close_fds(0, (unsigned int)lo - 1);
	if (hi > lo + 1)
		close_fds((unsigned int)lo + 1, (unsigned int)hi - 1);
	close_fds((unsigned int)hi + 1, ~0U);
}

/* fork(), waiting out a full process table for a moment: processes of a killed tree
 * free their pids as they finish exiting, so a fork just after often succeeds. */
static pid_t fork_patiently(void)
{
	long long deadline = now_ms() + FORK_PATIENCE_MS;
	for (;;) {
		pid_t pid = fork();
		if (pid >= 0 || errno != EAGAIN || now_ms() >= deadline)
			return pid;
		nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
	}
}

/* ---- messages to the server --------------------------------------------------------- */

/* A packet, printf-style (every message is small). Blocking, as in agent.py: the server
 * reads as fast as it can, and a send that fails means it is gone, which the next poll
 * of the socket tells. */
static void send_msg(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof buf)
		while (send(SOCK, buf, (size_t)n, MSG_NOSIGNAL) < 0 && errno == EINTR)
			;
}

/* `s` (our own ASCII texts) as a quoted JSON string, escaped as json.dumps does. */
static const char *json_str(char *out, size_t cap, const char *s)
{
	size_t n = 0;
	out[n++] = '"';
	for (; *s && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c < 0x80 ? c : 0xfffd);
		else
			out[n++] = (char)c;
	}
	out[n++] = '"';
	out[n] = 0;
	return out;
}

/* A packet with one descriptor attached (a terminal's master side, for the server). */
static void send_fd_msg(int fd, const char *fmt, ...)
{
	char buf[256];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof ctl.buf};
	struct cmsghdr *c;
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n <= 0 || (size_t)n >= sizeof buf)
		return;
	iov = (struct iovec){buf, (size_t)n};
	memset(ctl.buf, 0, sizeof ctl.buf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	while (sendmsg(SOCK, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* A new terminal on the sandbox's own devpts: its master in *master, its other side
 * (the command's stdin, stdout and stderr) in fds[0..2]. 0, or an errno. */
static int open_terminal(long long cols, long long rows, int echo, int *master, int fds[4])
{
	struct winsize ws = {(unsigned short)rows, (unsigned short)cols, 0, 0};
	struct termios tio;
	int unlock = 0, err, slave = -1;
	*master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return errno;
	if (ioctl(*master, TIOCSPTLCK, &unlock) == 0 && ioctl(*master, TIOCSWINSZ, &ws) == 0)
		slave = ioctl(*master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	/* Before the command runs: a shell saves the terminal's state as it starts and
	 * puts it back after a job a signal ended. */
	if (slave >= 0 && !echo && (tcgetattr(slave, &tio) < 0 ||
				    (tio.c_lflag &= ~(tcflag_t)ECHO, tcsetattr(slave, TCSANOW, &tio)) < 0)) {
		close(slave);
		slave = -1;
	}
	if (slave < 0) {
		err = errno;
		close(*master);
		*master = -1;
		return err ? err : EIO;
	}
	fds[0] = fds[1] = fds[2] = slave;
	return 0;
}

static void fail(long long id, const char *error, const char *reason)
{
	char e[600], r[80];
	send_msg("{\"op\":\"failed\",\"id\":%lld,\"error\":%s,\"reason\":%s}", id,
		 json_str(e, sizeof e, error), json_str(r, sizeof r, reason));
}

static void fail_fork(long long id, int err)
{
	char text[200];
	if (err == EAGAIN) {
		fail(id, "the sandbox is at its process limit (its pids limit): the command was "
		     "not started; end some of its processes, or wait for them to exit, and try "
		     "again", "pids_limit");
		return;
	}
	snprintf(text, sizeof text, "cannot start the command: %s", strerror(err ? err : EIO));
	fail(id, text, "spawn_failed");
}

/* ---- reading the server's JSON ------------------------------------------------------ */

/*
 * Enough of json.loads for the one message shape we take, strict as it is. Strings are
 * decoded in place (an escape is never shorter than what it decodes to, so the output
 * never overtakes the input): argv and env point into the packet's buffer, and a 3 MiB
 * argument is never copied.
 */
enum { STR_NUL = 1, STR_BAD = 2 }; /* a string held a NUL; was not valid Unicode */

struct parser {
	char *p, *end;
	int flags; /* STR_* of the strings read since it was last cleared */
};

struct msg {
	char *op;
	long long id, pid, sig;
	int has_id, has_pid, has_sig;
	char **argv, **env; /* env entries are "NAME=value" */
	size_t argc, envc, argv_cap, env_cap;
	int has_argv, has_env, argv_flags, env_flags;
	char *cwd; /* NULL when absent or null: "/" */
	int cwd_flags;
	int want_stdin;
	int tty; /* run on a new terminal of the sandbox's own /dev/pts */
	int no_echo; /* that terminal starts with echo off ("echo": false) */
	long long cols, rows;
	int has_cols, has_rows;
	const char *bad; /* a field we cannot use: why, for the "failed" answer */
};

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int next_is(struct parser *ps, char c)
{
	skip_ws(ps);
	return ps->p < ps->end && *ps->p == c;
}

static int eat(struct parser *ps, char c)
{
	return next_is(ps, c) ? (ps->p++, 1) : 0;
}

static int word(struct parser *ps, const char *w)
{
	size_t n = strlen(w);
	skip_ws(ps);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
		return 0;
	ps->p += n;
	return 1;
}

/* The length of the UTF-8 sequence at s, as Python's strict decoder takes it (0: none:
 * overlong forms and encoded surrogates are refused too). */
static int utf8_len(const unsigned char *s, const unsigned char *end)
{
	unsigned int cp, min;
	int n, i;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		n = 2, cp = s[0] & 0x1fu, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0fu, min = 0x800;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, cp = s[0] & 0x07u, min = 0x10000;
	else
		return 0;
	if (end - s < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : n;
}

static char *put_utf8(char *w, unsigned int cp)
{
	if (cp < 0x80) {
		*w++ = (char)cp;
	} else if (cp < 0x800) {
		*w++ = (char)(0xc0 | cp >> 6);
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*w++ = (char)(0xe0 | cp >> 12);
		*w++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*w++ = (char)(0xf0 | cp >> 18);
		*w++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*w++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*w++ = (char)(0x80 | (cp & 0x3f));
	}
	return w;
}

/* The four hex digits of a \u escape at s (-1: not four hex digits). */
static long hex4(const char *s, const char *end)
{
	long v = 0;
	int i;
	if (end - s < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		const char *digit = strchr("0123456789abcdef", s[i] | 0x20);
		if (!s[i] || !digit)
			return -1;
		v = v << 4 | (digit - "0123456789abcdef");
	}
	return v;
}

/* The string at ps->p, decoded in place and NUL-terminated: its decoded length (it may
 * hold NULs of its own, flagged STR_NUL), or -1 on a syntax error. Escapes come from
 * json.dumps in both of the server's encodings: UTF-8 text, or \uXXXX with surrogate
 * pairs when the request holds a lone surrogate (which no OS string can: STR_BAD). */
static int string(struct parser *ps, char **out)
{
	char *r, *w;
	if (!next_is(ps, '"'))
		return -1;
	*out = r = w = ps->p + 1;
	while (r < ps->end) {
		unsigned char c = (unsigned char)*r;
		long cp, lo;
		int n;
		if (c == '"') {
			*w = 0;
			ps->p = r + 1;
			return (int)(w - *out); /* a packet is far below INT_MAX */
		}
		if (c < 0x20)
			return -1; /* a raw control character: json.loads (strict) refuses it */
		if (c != '\\') {
			if (!(n = utf8_len((unsigned char *)r, (unsigned char *)ps->end))) {
				ps->flags |= STR_BAD;
				n = 1;
			}
			memmove(w, r, (size_t)n);
			w += n, r += n;
			continue;
		}
		if (++r >= ps->end)
			return -1;
		switch (*r++) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u':
			if ((cp = hex4(r, ps->end)) < 0)
				return -1;
			r += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && ps->end - r >= 6 && r[0] == '\\' &&
			    r[1] == 'u' && (lo = hex4(r + 2, ps->end)) >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				r += 6;
			} else if (cp >= 0xd800 && cp <= 0xdfff) {
				ps->flags |= STR_BAD;
				cp = 0xfffd;
			}
			if (cp == 0)
				ps->flags |= STR_NUL;
			w = put_utf8(w, (unsigned int)cp);
			break;
		default:
			return -1;
		}
	}
	return -1;
}

/* A number: 1 when it is a plain integer that fits a long long (in *out), 0 for any
 * other number, -1 on a syntax error. */
static int number(struct parser *ps, long long *out)
{
	char *p;
	int neg = 0, integral = 1;
	unsigned long long v = 0;
	skip_ws(ps);
	p = ps->p;
	if (p < ps->end && *p == '-') {
		neg = 1;
		if (ps->end - ++p >= 8 && !memcmp(p, "Infinity", 8)) { /* json.loads takes it */
			ps->p = p + 8;
			return 0;
		}
	}
	if (p >= ps->end || *p < '0' || *p > '9')
		return -1;
	if (*p == '0') /* no leading zeros: "01" is a 0 followed by garbage */
		p++;
	else
		for (; p < ps->end && *p >= '0' && *p <= '9'; p++) {
			if (v > (ULLONG_MAX - 9) / 10)
				integral = 0; /* too large for us: a number all the same */
			v = v * 10 + (unsigned)(*p - '0');
		}
	if (p < ps->end && *p == '.') {
		integral = 0;
		if (++p >= ps->end || *p < '0' || *p > '9')
			return -1;
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		integral = 0;
		if (++p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return -1;
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	ps->p = p;
	if (!integral || v > (unsigned long long)LLONG_MAX + (unsigned)neg)
		return 0;
	*out = neg ? (long long)(0 - v) : (long long)v;
	return 1;
}

/* The members of the array or object at ps->p: `member` is called at each value (with
 * its key, decoded, in an object) and must consume it. */
typedef int member_fn(struct parser *ps, char *key, int keylen, void *ctx);

static int members(struct parser *ps, char open, member_fn *member, void *ctx)
{
	char close = open == '{' ? '}' : ']';
	if (!eat(ps, open))
		return -1;
	if (eat(ps, close))
		return 0;
	do {
		char *key = NULL;
		int keylen = 0;
		if (open == '{' && ((keylen = string(ps, &key)) < 0 || !eat(ps, ':')))
			return -1;
		skip_ws(ps);
		if (member(ps, key, keylen, ctx) < 0)
			return -1;
	} while (eat(ps, ','));
	return eat(ps, close) ? 0 : -1;
}

static int skip(struct parser *ps, int depth);

static int skip_member(struct parser *ps, char *key, int keylen, void *depth)
{
	(void)key, (void)keylen;
	return skip(ps, *(int *)depth + 1);
}

/* Any value, skipped: what we have no use for. */
static int skip(struct parser *ps, int depth)
{
	char *s;
	long long n;
	skip_ws(ps);
	if (depth > MAX_DEPTH || ps->p >= ps->end)
		return -1;
	if (*ps->p == '{' || *ps->p == '[')
		return members(ps, *ps->p, skip_member, &depth);
	if (*ps->p == '"')
		return string(ps, &s) < 0 ? -1 : 0;
	if (word(ps, "true") || word(ps, "false") || word(ps, "null") || word(ps, "NaN") ||
	    word(ps, "Infinity"))
		return 0;
	return number(ps, &n) < 0 ? -1 : 0;
}

/* An integer field: *has is set when it is one we can use. */
static int integer(struct parser *ps, long long *out, int *has)
{
	*has = 0;
	if (next_is(ps, '-') || (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')) {
		int r = number(ps, out);
		*has = r == 1;
		return r < 0 ? -1 : 0;
	}
	return skip(ps, 1);
}

static void push(char ***list, size_t *n, size_t *cap, char *s)
{
	if (*n + 2 > *cap) { /* room for the NULL that ends the list */
		*cap = *cap ? *cap * 2 : 16;
		*list = xrealloc(*list, *cap * sizeof **list);
	}
	(*list)[(*n)++] = s;
}

static int argv_member(struct parser *ps, char *key, int keylen, void *ctx)
{
	struct msg *m = ctx;
	char *s;
	(void)key, (void)keylen;
	if (!next_is(ps, '"')) {
		m->bad = "argv is not a list of strings";
		return skip(ps, 2);
	}
	if (string(ps, &s) < 0)
		return -1;
	push(&m->argv, &m->argc, &m->argv_cap, s);
	return 0;
}

/* One variable, made "NAME=value" in place: the value moves left over the `":"` that
 * separated it from its name. */
static int env_member(struct parser *ps, char *name, int namelen, void *ctx)
{
	struct msg *m = ctx;
	char *value;
	int n;
	if (!next_is(ps, '"')) {
		m->bad = "env is not an object of strings";
		return skip(ps, 2);
	}
	if ((n = string(ps, &value)) < 0)
		return -1;
	if (namelen == 0 || memchr(name, '=', (size_t)namelen))
		m->bad = "an environment variable's name is empty or holds '='";
	name[namelen] = '=';
	memmove(name + namelen + 1, value, (size_t)n + 1);
	push(&m->env, &m->envc, &m->env_cap, name);
	return 0;
}

static int msg_member(struct parser *ps, char *key, int keylen, void *ctx)
{
	struct msg *m = ctx;
	int r;
#define KEY(k) (keylen == (int)sizeof k - 1 && !memcmp(key, k, sizeof k - 1))
	ps->flags = 0;
	if (KEY("id"))
		return integer(ps, &m->id, &m->has_id);
	if (KEY("pid"))
		return integer(ps, &m->pid, &m->has_pid);
	if (KEY("signal"))
		return integer(ps, &m->sig, &m->has_sig);
	if (KEY("cols"))
		return integer(ps, &m->cols, &m->has_cols);
	if (KEY("rows"))
		return integer(ps, &m->rows, &m->has_rows);
	if (KEY("echo")) {
		m->no_echo = word(ps, "false");
		if (m->no_echo || word(ps, "true") || word(ps, "null"))
			return 0;
		m->bad = "echo is not a boolean";
		return skip(ps, 1);
	}
	if (KEY("tty")) {
		m->tty = word(ps, "true");
		if (m->tty || word(ps, "false") || word(ps, "null"))
			return 0;
		m->bad = "tty is not a boolean";
		return skip(ps, 1);
	}
	if (KEY("op")) {
		char *op;
		m->op = NULL;
		if (!next_is(ps, '"'))
			return skip(ps, 1);
		if ((r = string(ps, &op)) < 0)
			return -1;
		if ((size_t)r == strlen(op)) /* "spawn\u0000x" is no op of ours */
			m->op = op;
		return 0;
	}
	if (KEY("argv")) {
		m->has_argv = 1;
		m->argc = 0;
		if (!next_is(ps, '[')) {
			m->bad = "argv is not a list of strings";
			return skip(ps, 1);
		}
		r = members(ps, '[', argv_member, m);
		m->argv_flags = ps->flags;
		return r;
	}
	if (KEY("env")) {
		m->has_env = 1;
		m->envc = 0;
		if (!next_is(ps, '{')) {
			m->bad = "env is not an object of strings";
			return skip(ps, 1);
		}
		r = members(ps, '{', env_member, m);
		m->env_flags = ps->flags;
		return r;
	}
	if (KEY("cwd")) {
		m->cwd = NULL;
		m->cwd_flags = 0;
		if (word(ps, "null"))
			return 0;
		if (!next_is(ps, '"')) {
			m->bad = "cwd is not a string";
			return skip(ps, 1);
		}
		r = string(ps, &m->cwd);
		m->cwd_flags = ps->flags;
		return r < 0 ? -1 : 0;
	}
	if (KEY("stdin")) {
		m->want_stdin = word(ps, "true");
		if (m->want_stdin || word(ps, "false") || word(ps, "null"))
			return 0;
		m->bad = "stdin is not a boolean";
		return skip(ps, 1);
	}
	return skip(ps, 1);
#undef KEY
}

/* The message in buf[0..n): 0, or -1 when it is not a JSON object. */
static int parse_msg(char *buf, size_t n, struct msg *m)
{
	struct parser ps = {buf, buf + n, 0};
	if (!next_is(&ps, '{') || members(&ps, '{', msg_member, m) < 0)
		return -1;
	skip_ws(&ps);
	return ps.p == ps.end ? 0 : -1;
}

/* ---- the process table -------------------------------------------------------------- */

struct proc {
	pid_t pid, ppid; /* pid first: a struct proc * is a pid_t * for by_pid */
};

static int by_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

/* A zombie thread-group leader whose other threads still run: alive, and killable (a
 * SIGKILL to it ends the whole group). */
static int has_threads(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return 0;
	while (n < 2 && (e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n > 1;
}

/* Every live process of this sandbox (its /proc) with its parent, sorted by pid. */
static size_t process_table(struct proc **out)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	struct proc *t = NULL;
	size_t n = 0, cap = 0;
	while (d && (e = readdir(d))) {
		char path[64], buf[512], *p;
		pid_t pid = (pid_t)atoi(e->d_name);
		int fd;
		ssize_t k;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		k = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = 0;
		/* "pid (comm) S ppid ...": comm may hold anything, so from the last ')' */
		if (!(p = strrchr(buf, ')')) || p[1] != ' ' || !p[2] || p[3] != ' ')
			continue;
		if (p[2] == 'Z' && !has_threads(pid))
			continue;
		if (n == cap)
			t = xrealloc(t, (cap = cap ? cap * 2 : 256) * sizeof *t);
		t[n].pid = pid;
		t[n++].ppid = (pid_t)atoi(p + 4);
	}
	if (d)
		closedir(d);
	qsort(t, n, sizeof *t, by_pid);
	*out = t;
	return n;
}

/* mark[i] = 1 for the entries that are one of `roots` (sorted) or below one. */
static void mark_trees(const struct proc *t, size_t n, const pid_t *roots, size_t nroots,
		       char *mark)
{
	int changed = 1;
	size_t i;
	for (i = 0; i < n; i++)
		mark[i] = nroots && bsearch(&t[i].pid, roots, nroots, sizeof *roots, by_pid);
	while (changed) {
		changed = 0;
		for (i = 0; i < n; i++) {
			const struct proc *up;
			if (mark[i])
				continue;
			up = bsearch(&t[i].ppid, t, n, sizeof *t, by_pid);
			if (up && mark[up - t])
				mark[i] = changed = 1;
		}
	}
}

/* ---- the agent's state -------------------------------------------------------------- */

struct shepherd {
	pid_t pid, cmd_pid;
	long long id;
	int report;     /* its report pipe; -1 once the command's end was sent */
	char early[64]; /* what was read past its start line: a quick command's end */
};

static struct shepherd *sheps;
static size_t nsheps, sheps_cap;
static struct { pid_t pid; int status; } *reaped; /* reaped, not yet looked at */
static size_t nreaped, reaped_cap;
static int sigfd = -1;
static char rbuf[MAX_PACKET]; /* a packet; only the pages a large one touched count */

/* Reap exited children without blocking (PID 1 inherits every orphan's zombie). Queued
 * for reap(), so the rounds of a kill never lose a shepherd's end. */
static void reap_any(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (nreaped == reaped_cap)
			reaped = xrealloc(reaped, (reaped_cap = reaped_cap ? reaped_cap * 2 : 64) *
						  sizeof *reaped);
		reaped[nreaped].pid = pid;
		reaped[nreaped++].status = status;
	}
}

/* SIGKILL, round after round (each round sees what the last one's kills orphaned),
 * until nothing is found: with root > 0, everything below root (a subreaper, so the
 * orphans of its tree reparent to it); with root == 0, every stray: not us, not a
 * shepherd, not below one. */
static void kill_until_gone(pid_t root)
{
	int round;
	for (round = 0; round < KILL_ROUNDS; round++) {
		struct proc *t;
		size_t n = process_table(&t), nroots = 1, i, found = 0;
		pid_t *roots = xrealloc(NULL, (nsheps + 1) * sizeof *roots);
		char *mark = xrealloc(NULL, n);
		roots[0] = root;
		if (!root) {
			for (nroots = 0; nroots < nsheps; nroots++)
				roots[nroots] = sheps[nroots].pid;
			qsort(roots, nroots, sizeof *roots, by_pid);
		}
		mark_trees(t, n, roots, nroots, mark);
		for (i = 0; i < n; i++) {
			if (root ? mark[i] && t[i].pid != root : !mark[i] && t[i].pid != 1) {
				kill(t[i].pid, SIGKILL);
				found++;
			}
		}
		free(mark);
		free(roots);
		free(t);
		if (!found)
			return;
		reap_any();
	}
}

/* ---- the command and its shepherd --------------------------------------------------- */

/* In the forked command: reset what the agent changed, wait at the gate until the
 * shepherd has reported it, take the pipes, exec. Never returns. */
static void exec_command(struct msg *m, int *fds, int nfds, int gate)
{
	const char *what = NULL;
	int i, src[3], err;
	char c;
	ssize_t k;
	sigset_t none;
	/* Signals first: once setsid makes the command its own group, the server may
	 * signal it, and the agent's ignored SIGINT/SIGTERM must not swallow that. */
	for (i = 1; i < NSIG; i++)
		if (i != SIGKILL && i != SIGSTOP)
			signal(i, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	/* A byte once the shepherd reported us: no user code runs before. EOF instead
	 * means the shepherd died first, and no command would answer for this one. */
	while ((k = read(gate, &c, 1)) < 0 && errno == EINTR)
		;
	if (k != 1)
		_exit(127);
	umask(022); /* the server's own umask (077) is not the command's */
	src[0] = m->want_stdin ? fds[0] : open("/dev/null", O_RDONLY | O_CLOEXEC);
	src[1] = fds[nfds - 2];
	src[2] = fds[nfds - 1];
	/* Moved above 2 first, so no dup2 overwrites a source still to be taken (fds 0-2
	 * are not the command's yet: /dev/null or the gate may be on 0). */
	for (i = 0; i < 3; i++)
		src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
	for (i = 0; i < 3; i++)
		if (src[i] < 0 || dup2(src[i], i) < 0)
			goto fail;
	close_fds(3, ~0U);
	/* A session leader (setsid above) takes its terminal: job control, ^C, SIGWINCH. */
	if (m->tty && ioctl(0, TIOCSCTTY, 0) < 0)
		goto fail;
	what = m->cwd && *m->cwd ? m->cwd : "/";
	if (chdir(what) == 0) {
		execve(m->argv[0], m->argv, m->env);
		what = m->argv[0];
	}
fail:
	err = errno;
	write_str(2, "chaser: cannot start command: ");
	if (what && what == m->argv[0] && (err == ENOENT || err == ENOTDIR)) {
		/* the same words as a one-shot run's (`agent exec`): a distroless image */
		write_str(2, "this image has no ");
		write_str(2, what);
		write_str(2, " (");
		write_str(2, strerror(err));
		write_str(2, ")\n");
		_exit(127);
	}
	write_str(2, strerror(err));
	if (what) { /* as agent.py's OSError text: which path */
		write_str(2, ": '");
		write_str(2, what);
		write_str(2, "'");
	}
	write_str(2, "\n");
	_exit(127);
}

static void report_line(int fd, char kind, const char *text, long value)
{
	char line[128];
	if (text)
		snprintf(line, sizeof line, "%c %s\n", kind, text);
	else
		snprintf(line, sizeof line, "%c %ld\n", kind, value);
	write_str(fd, line);
}

/* The command's subreaper: fork it, report how it ended, then reap what it left.
 * Reports go to the agent through `report` (a pipe): "S pid", then "E code" or
 * "K signal"; "F reason" when the command could not be forked. Never returns. */
static void shepherd(struct msg *m, int *fds, int nfds, int report)
{
	int gate[2], i, status;
	pid_t pid, done;
	sigset_t none;
	close(SOCK); /* the server's channel never reaches a command's process */
	close(sigfd);
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	if (pipe2(gate, O_CLOEXEC) < 0) {
		report_line(report, 'F', strerror(errno), 0);
		_exit(0);
	}
	pid = fork_patiently();
	if (pid < 0) {
		report_line(report, 'F', errno == EAGAIN ? "pids" : strerror(errno), 0);
		_exit(0);
	}
	if (pid == 0) {
		close(report);
		close(gate[1]);
		exec_command(m, fds, nfds, gate[0]);
	}
	/* Keep only the report pipe and the gate: the command's pipes must close when its
	 * processes end, and the agent's other fds (other commands' report pipes) are none
	 * of ours. */
	keep_only(report, gate[1]);
	/* Reported once the command leads its own session, so a signal the server sends
	 * right away reaches its group (killpg before setsid would find no such group). */
	for (i = 0; i < 1000000; i++) {
		pid_t sid = getsid(pid);
		if (sid == pid || (sid < 0 && errno == ESRCH))
			break;
		sched_yield();
	}
	report_line(report, 'S', NULL, pid);
	if (write(gate[1], "g", 1) < 0) /* the command may run: the agent heard of it first */
		_exit(0);
	close(gate[1]);
	for (;;) {
		done = waitpid(-1, &status, 0);
		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			_exit(0); /* everything the command started has ended */
		if (done != pid)
			continue;
		if (WIFSIGNALED(status))
			report_line(report, 'K', NULL, WTERMSIG(status));
		else
			report_line(report, 'E', NULL, WEXITSTATUS(status));
		close(report);
	}
}

/* ---- the agent: PID 1 --------------------------------------------------------------- */

/* The first line from a pipe within `timeout_ms` (empty when none came), and what was
 * read past it. */
static void read_line(int fd, int timeout_ms, char line[64], char rest[64])
{
	char data[128], *nl = NULL;
	size_t n = 0, len;
	long long deadline = now_ms() + timeout_ms;
	line[0] = rest[0] = 0;
	while (!(nl = memchr(data, '\n', n)) && n < sizeof data) {
		struct pollfd p = {fd, POLLIN, 0};
		long long left = deadline - now_ms();
		ssize_t k;
		if (left <= 0)
			return;
		if ((k = poll(&p, 1, (int)left)) < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;
		if ((k = read(fd, data + n, sizeof data - n)) < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	len = nl ? (size_t)(nl - data) : n;
	snprintf(line, 64, "%.*s", (int)len, data);
	if (nl)
		snprintf(rest, 64, "%.*s", (int)(n - len - 1), nl + 1);
}

/* Why a spawn cannot go ahead (and *reason, the server's error code), or NULL. */
static const char *refusal(struct msg *m, int nfds, const char **reason, char *text, size_t cap)
{
	const char *cwd = m->cwd && *m->cwd ? m->cwd : "/";
	struct stat st;
	*reason = "spawn_failed";
	if (!m->bad && (!m->has_argv || m->argc == 0))
		m->bad = "argv is empty";
	if (!m->bad && !m->has_env)
		m->bad = "env is missing";
	if (!m->bad && m->tty && (nfds != 0 || !m->has_cols || !m->has_rows || m->cols < 1 ||
				  m->rows < 1 || m->cols > 65535 || m->rows > 65535))
		m->bad = "a tty spawn carries no file descriptors and a size (cols, rows 1-65535)";
	if (!m->bad && !m->tty && nfds != (m->want_stdin ? 3 : 2))
		m->bad = m->want_stdin ? "it did not carry 3 file descriptors (stdin, stdout, stderr)"
				       : "it did not carry 2 file descriptors (stdout, stderr)";
	if (m->bad) {
		snprintf(text, cap, "cannot start the command: a malformed request (%s)", m->bad);
		return text;
	}
	if (m->cwd_flags || stat(cwd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		*reason = "invalid_cwd";
		return "cwd does not exist in the sandbox or is not a directory";
	}
	if ((m->argv_flags | m->env_flags) & STR_BAD)
		return "cannot start the command: its argv or environment is not valid Unicode "
		       "(a lone surrogate, or bytes that are not UTF-8)";
	if ((m->argv_flags | m->env_flags) & STR_NUL)
		return "cannot start the command: its argv or environment holds a NUL character, "
		       "which no program can be given";
	return NULL;
}

static void spawn(struct msg *m, int *fds, int nfds)
{
	const char *error, *reason;
	char text[300], line[64], rest[64];
	int rw[2], err, master = -1;
	long cmd_pid;
	pid_t pid;
	if ((error = refusal(m, nfds, &reason, text, sizeof text))) {
		fail(m->id, error, reason);
		return;
	}
	if (!m->env)
		m->env = xrealloc(NULL, sizeof *m->env);
	m->argv[m->argc] = NULL;
	m->env[m->envc] = NULL;
	if (m->tty) {
		if ((err = open_terminal(m->cols, m->rows, !m->no_echo, &master, fds)) != 0) {
			snprintf(text, sizeof text, "cannot open a terminal in the sandbox: %s",
				 strerror(err));
			fail(m->id, text, "spawn_failed");
			return;
		}
		nfds = 3; /* one slave fd three times; closed at out: below */
		m->want_stdin = 1;
	}
	if (pipe2(rw, O_CLOEXEC) < 0) {
		fail_fork(m->id, errno);
		goto out;
	}
	if ((pid = fork_patiently()) < 0) {
		err = errno;
		close(rw[0]);
		close(rw[1]);
		fail_fork(m->id, err);
		goto out;
	}
	if (pid == 0) {
		close(rw[0]);
		shepherd(m, fds, nfds, rw[1]);
	}
	close(rw[1]);
	read_line(rw[0], START_TIMEOUT_MS, line, rest);
	if (!line[0]) /* it never said it started (stopped by a command?): end it */
		kill(pid, SIGKILL);
	if (!strncmp(line, "S ", 2) && (cmd_pid = strtol(line + 2, NULL, 10)) > 0) {
		struct shepherd *s;
		if (nsheps == sheps_cap)
			sheps = xrealloc(sheps, (sheps_cap = sheps_cap ? sheps_cap * 2 : 16) *
						    sizeof *sheps);
		s = &sheps[nsheps++];
		s->pid = pid;
		s->cmd_pid = (pid_t)cmd_pid;
		s->id = m->id;
		s->report = rw[0];
		memcpy(s->early, rest, sizeof s->early);
		fcntl(rw[0], F_SETFL, O_NONBLOCK);
		if (master >= 0)
			send_fd_msg(master, "{\"op\":\"started\",\"id\":%lld,\"pid\":%ld}",
				    m->id, cmd_pid);
		else
			send_msg("{\"op\":\"started\",\"id\":%lld,\"pid\":%ld}", m->id,
				 cmd_pid);
		goto out;
	}
	close(rw[0]);
	if (!strcmp(line, "F pids"))
		fail_fork(m->id, EAGAIN);
	else
		fail(m->id, !strncmp(line, "F ", 2) ? line + 2 : "the command could not start",
		     "spawn_failed");
out:
	if (master >= 0) {
		close(master);
		close(fds[0]);
	}
}

static void kill_command(pid_t pid, int sig)
{
	size_t i;
	for (i = 0; i < nsheps; i++) {
		pid_t shep = sheps[i].pid;
		if (sheps[i].cmd_pid != pid || sheps[i].report < 0) /* only a command still running */
			continue;
		if (sig == SIGKILL) {
			/* The main process first: it must die of this signal, not exit 137 after
			 * reaping a child that died before it (then it would read as exited). */
			kill(pid, SIGKILL);
			kill_until_gone(shep);
			kill(shep, SIGKILL);
		} else {
			killpg(pid, sig);
		}
		return;
	}
}

/* A shepherd wrote (or closed) its report pipe: send the command's end, once. */
static void report(struct shepherd *s)
{
	char data[256], num[2][16] = {"null", "null"}, *line, *save;
	size_t n = strlen(s->early);
	ssize_t k;
	int code = -1, sig = SIGKILL; /* a shepherd killed before it could report */
	memcpy(data, s->early, n);
	while (n < sizeof data - 1) {
		if ((k = read(s->report, data + n, sizeof data - 1 - n)) < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	data[n] = 0;
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "E ", 2))
			code = atoi(line + 2), sig = -1;
		else if (!strncmp(line, "K ", 2))
			code = -1, sig = atoi(line + 2);
	}
	close(s->report);
	s->report = -1;
	if (code >= 0)
		snprintf(num[0], sizeof num[0], "%d", code);
	if (sig >= 0)
		snprintf(num[1], sizeof num[1], "%d", sig);
	send_msg("{\"op\":\"exit\",\"id\":%lld,\"pid\":%d,\"code\":%s,\"signal\":%s}", s->id,
		 (int)s->cmd_pid, num[0], num[1]);
}

/* Reap every child (PID 1 inherits all orphans); a shepherd gone reports last. */
static void reap(void)
{
	int swept = 0;
	size_t i, j;
	reap_any();
	for (i = 0; i < nreaped; i++) { /* the sweep's rounds may queue more */
		for (j = 0; j < nsheps && sheps[j].pid != reaped[i].pid; j++)
			;
		if (j == nsheps)
			continue;
		if (sheps[j].report >= 0)
			report(&sheps[j]);
		sheps[j] = sheps[--nsheps];
		if (WIFSIGNALED(reaped[i].status) && !swept) {
			/* A killed shepherd orphaned its command's processes to us, and no
			 * command answers for them any more: kill every process that is not a
			 * shepherd nor below one, whole chains at once. */
			kill_until_gone(0);
			swept = 1;
		}
	}
	nreaped = 0;
}

/* One packet from the server into rbuf: its length (0: nothing, or nothing usable: a
 * packet too large), or -1 once the server's end has closed. Its fds land in fds[4]
 * (*nfds of them; -1 when more came than we take, all closed). */
static ssize_t receive(int fds[4], int *nfds, int hangup)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = {rbuf, sizeof rbuf};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof ctl.buf};
	struct cmsghdr *c;
	ssize_t k = recvmsg(SOCK, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	*nfds = 0;
	if (k < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t i, count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (i = 0; i < count && *nfds < 4; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (mh.msg_flags & MSG_CTRUNC) { /* more than any spawn carries (the kernel closed */
		while (*nfds > 0)        /* those past our buffer): none is usable */
			close(fds[--*nfds]);
		*nfds = -1;
	}
	/* A SEQPACKET read of 0 bytes is an empty packet, or the end of the channel. */
	if (k == 0 && *nfds == 0 && hangup)
		return -1;
	return mh.msg_flags & MSG_TRUNC ? 0 : k;
}

static void handle(size_t n, int fds[4], int nfds)
{
	struct msg m;
	int i;
	memset(&m, 0, sizeof m);
	if (parse_msg(rbuf, n, &m) == 0 && m.op) {
		if (!strcmp(m.op, "spawn") && m.has_id)
			spawn(&m, fds, nfds);
		else if (!strcmp(m.op, "kill") && m.has_pid && m.has_sig && m.pid > 0 &&
			 m.pid <= INT32_MAX && m.sig >= 0 && m.sig < NSIG)
			kill_command((pid_t)m.pid, (int)m.sig);
	}
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	free(m.argv);
	free(m.env);
	if (n > (1 << 20)) { /* give back the pages a large request took */
		char *from = (char *)(((uintptr_t)rbuf + 4095) & ~(uintptr_t)4095);
		madvise(from, (n - (size_t)(from - rbuf)) & ~(size_t)4095, MADV_DONTNEED);
	}
}

static int agent(void)
{
	struct pollfd *pfds = NULL;
	size_t cap = 0;
	sigset_t chld;
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	/* SIGCHLD wakes the poll through a signalfd: blocked, so even PID 1 (for which the
	 * kernel drops signals without a handler) gets it queued. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if ((sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		write_str(2, "chaser agent: signalfd failed\n");
		return 1;
	}
	send_msg("{\"op\":\"ready\",\"pid\":%d}", (int)getpid());
	for (;;) {
		size_t n = 2, i, j;
		if (nsheps + 2 > cap)
			pfds = xrealloc(pfds, (cap = nsheps + 16) * sizeof *pfds);
		pfds[0] = (struct pollfd){SOCK, POLLIN | POLLRDHUP, 0};
		pfds[1] = (struct pollfd){sigfd, POLLIN, 0};
		for (i = 0; i < nsheps; i++)
			if (sheps[i].report >= 0)
				pfds[n++] = (struct pollfd){sheps[i].report, POLLIN, 0};
		if (poll(pfds, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		/* Reports first, while no fd has been opened since the poll: the numbers in
		 * pfds still name the pipes they did (the socket's spawns make new ones). */
		for (i = 2; i < n; i++)
			for (j = 0; pfds[i].revents && j < nsheps; j++)
				if (sheps[j].report == pfds[i].fd) {
					report(&sheps[j]);
					break;
				}
		if (pfds[1].revents) {
			struct signalfd_siginfo info[16];
			while (read(sigfd, info, sizeof info) > 0)
				;
		}
		if (pfds[0].revents) {
			int fds[4], nfds;
			ssize_t len = receive(fds, &nfds, pfds[0].revents & (POLLHUP | POLLRDHUP));
			if (len < 0)
				return 0; /* the server's end closed: the sandbox ends with us */
			handle((size_t)len, fds, nfds);
		}
		reap();
	}
}

#include "agent_files.c" /* `agent files ...`: the files API's operations */

/* ---- one-shot sandboxes: `agent exec` ----------------------------------------------- */

/* What oneshot.py's ONESHOT_WRAPPER does, with no shell of the image's needed to run it:
 * the request arrived in the environment (never in a host argv), its command in two
 * halves; the command gets exactly the request's environment. */
static int oneshot(void)
{
	const char *names[3] = {"__SANDBOX_SHELL", "__SANDBOX_CMD", "__SANDBOX_CMD2"};
	char *val[3], *argv[4];
	int i, err;
	for (i = 0; i < 3; i++) {
		const char *v = getenv(names[i]);
		val[i] = strdup(v ? v : "");
		if (!val[i])
			return 127;
		unsetenv(names[i]);
	}
	argv[0] = val[0];
	argv[1] = "-c";
	argv[2] = xrealloc(NULL, strlen(val[1]) + strlen(val[2]) + 1);
	strcat(strcpy(argv[2], val[1]), val[2]);
	argv[3] = NULL;
	umask(022);
	execv(val[0], argv);
	err = errno;
	write_str(2, "chaser: cannot start command: ");
	if (err == ENOENT || err == ENOTDIR) { /* a distroless image, say */
		write_str(2, "this image has no ");
		write_str(2, val[0]);
		write_str(2, " (");
	} else { /* there is one, but it cannot run (or the command is too large) */
		write_str(2, val[0]);
		write_str(2, ": ");
	}
	write_str(2, strerror(err));
	write_str(2, err == ENOENT || err == ENOTDIR ? ")\n" : "\n");
	return 127;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "exec"))
		return oneshot();
	if (argc >= 2 && !strcmp(argv[1], "files"))
		return files_main(argc - 2, argv + 2);
	/* The sweep kills every process it can see that is not below a shepherd: anywhere
	 * but as PID 1 of a fresh PID namespace, that would be the host's processes. */
	if (getpid() != 1) {
		write_str(2, "chaser agent: must run as PID 1 of a sandbox\n");
		return 2;
	}
	if (argc > 1) {
		write_str(2, "usage: agent (PID 1 of a session sandbox, its channel on stdin) | "
			     "agent exec (a one-shot sandbox's command, from the environment)\n");
		return 2;
	}
	return agent();
}
